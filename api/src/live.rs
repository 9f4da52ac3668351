//! `GET /v1/alerts/live`: new alerts as server-sent events, from the scoring service's Redis
//! channel. One subscription per process feeds every client through a broadcast channel; it
//! reconnects by itself when Redis goes away. A client too slow to keep up misses events (it
//! is told how many in a `lagged` event) rather than holding memory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::Api;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};

/// New alerts as the scoring service published them (JSON text), and the feeds open per key.
#[derive(Debug, Clone)]
pub struct Feed {
    sender: broadcast::Sender<Arc<str>>,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One open feed of a key, counted until it is dropped.
struct Opened {
    key_id: i64,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("no panic while locked");
        if let Some(count) = open.get_mut(&self.key_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

/// Events a slow client may fall behind by before it misses some.
const BACKLOG: usize = 4096;

impl Feed {
    /// Subscribes to the live alerts channel on a task of its own.
    pub fn start(client: redis::Client, prefix: &str) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        let channel = vigil_schema::redis_keys::live_alerts(prefix);
        let feed = sender.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = forward(&client, &channel, &feed).await {
                    tracing::warn!(error = %e, "live alert feed: redis subscription lost; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self {
            sender,
            open: Arc::default(),
        }
    }

    /// Counts a feed for `key_id`, unless it has `max` open already.
    fn open(&self, key_id: i64, max: usize) -> Result<Opened, ApiError> {
        let mut open = self.open.lock().expect("no panic while locked");
        let count = open.entry(key_id).or_default();
        if *count >= max {
            return Err(ApiError::RateLimited(1));
        }
        *count += 1;
        Ok(Opened {
            key_id,
            open: self.open.clone(),
        })
    }
}

async fn forward(
    client: &redis::Client,
    channel: &str,
    feed: &broadcast::Sender<Arc<str>>,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload()?;
        // No receiver is not an error: nobody is watching.
        let _ = feed.send(payload.into());
    }
    Ok(())
}

/// New alerts, as they are decided, while the caller's key stays live.
#[utoipa::path(get, path = "/v1/alerts/live", tag = "alerts",
    responses(
        (status = 200, description = "A stream of `alert` events, each an alert as JSON; it ends \
            when the key is revoked", content_type = "text/event-stream", body = String),
        (status = 429, description = "The key has as many live feeds open as it may \
            (`api.max_live_feeds_per_key`)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn alerts(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let opened = api
        .live
        .open(caller.key_id, api.config.max_live_feeds_per_key)?;
    let mut recheck =
        tokio::time::interval(Duration::from_secs(api.config.live_recheck_secs.max(1)));
    recheck.tick().await;
    let state = (api.live.sender.subscribe(), recheck, api, opened);
    let events = futures_util::stream::unfold(
        state,
        |(mut receiver, mut recheck, api, opened)| async move {
            let event = loop {
                tokio::select! {
                    received = receiver.recv() => break match received {
                        Ok(alert) => Event::default().event("alert").data(&*alert),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            Event::default().event("lagged").data(missed.to_string())
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = recheck.tick() => {
                        // A key revoked (or unknown) ends its feeds; Postgres down keeps them.
                        if api.keys.is_live(opened.key_id).await == Some(false) {
                            return None;
                        }
                    }
                }
            };
            Some((Ok(event), (receiver, recheck, api, opened)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
