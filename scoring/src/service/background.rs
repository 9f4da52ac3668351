//! Work that can wait: encoding and compressing snapshots. It runs on a thread of its own at a
//! lower CPU priority, so that on a machine with few cores it takes what scoring and committing
//! leave, rather than delaying the payments that wait for their decisions.

/// How much lower than the service's own the background thread's priority is (a nice value).
const NICENESS: i32 = 10;

/// Runs `work` on a new thread at the lower priority; its result, or why there is none.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("vigil-background".into())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = sender.send(work());
        })
        .map_err(|e| format!("no thread for background work: {e}"))?;
    receiver
        .await
        .map_err(|_| "background work panicked".to_owned())
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_this_threads_priority() {
    // SAFETY: setpriority touches no memory of ours. On Linux the nice value belongs to each
    // thread, and `who = 0` names the calling one. Should it fail, the work only runs at the
    // service's priority.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) };
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value of the calling thread, from /proc (the 19th field of its stat line).
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn background_work_runs_at_a_lower_priority_than_the_caller() {
        let own = niceness();
        let background = super::run(niceness).await.unwrap();
        assert_eq!(background, (own + super::NICENESS).min(19));
        assert_eq!(niceness(), own, "the caller's priority is unchanged");
    }
}
