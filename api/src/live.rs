//! `GET /v1/alerts/live`: new alerts as server-sent events, from the scoring service's Redis
//! channel. One subscription per process feeds every client through a broadcast channel; it
//! reconnects by itself when Redis goes away. A client too slow to keep up misses events (it
//! is told how many in a `lagged` event) rather than holding memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::Api;

/// New alerts as the scoring service published them (JSON text).
#[derive(Debug, Clone)]
pub struct Feed(broadcast::Sender<Arc<str>>);

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
        Self(sender)
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

/// New alerts, as they are decided.
#[utoipa::path(get, path = "/v1/alerts/live", tag = "alerts",
    responses((status = 200, description = "A stream of `alert` events, each an alert as JSON",
        content_type = "text/event-stream", body = String)),
    security(("api_key" = [])))]
pub async fn alerts(State(api): State<Api>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = api.live.0.subscribe();
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(alert) => Event::default().event("alert").data(&*alert),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(missed.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
