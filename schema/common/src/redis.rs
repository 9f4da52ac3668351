//! Redis clients as every service makes them.

use redis::IntoConnectionInfo as _;

/// A client of the Redis at `url` whose connections send each command at once
/// (`TCP_NODELAY`): a request waits on Redis's answer, and Nagle's algorithm would hold a
/// command's last segment until the previous one is acknowledged, which a delayed ACK puts off
/// by up to 40 ms.
pub fn client(url: &str) -> redis::RedisResult<redis::Client> {
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp))
}
