//! A call between two real Chrome pages served by two different relay instances that share
//! their rooms through a real Redis: page A on instance 1, page B (`/#true`) on instance 2.
//! Every signaling message between them goes instance → Redis → instance; frames must be
//! decoded on both sides, and each instance's `/metrics` must show the traffic went through
//! the backplane.
//!
//! Needs what `call.rs` needs (the bundle in `dist/`, `chromedriver`, `chromium`) and
//! `redis-server` (`scripts/setup.sh --test` installs it). Redis is started on a free loopback
//! port, with nothing saved to disk, and killed by its PID when the test ends, even on failure.

use std::{net::SocketAddr, time::Duration};

use e2e::{
    browser::{call_between, wait_for_state, wait_until_alone, Driver},
    relay::dist_dir,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The tests of this file take turns with each other, as those of `call.rs` do (test binaries
/// themselves run one after the other).
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long Redis and the instances may take to come up before the test fails.
const SETTLE: Duration = Duration::from_secs(15);

// Shared with the relay's tests, which pause Redis too.
#[allow(dead_code)]
#[path = "../../server/tests/common/redis.rs"]
mod redis;
use redis::Redis;
// Shared with the relay's tests, which read the headers this test has no use for.
#[allow(dead_code)]
#[path = "../../server/tests/common/http.rs"]
mod http;
use http::get;

/// Starts one relay instance with `--redis-url` on a free loopback port, serving the bundle,
/// and waits until its `/healthz` says it reaches Redis.
async fn instance(redis: &Redis) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let config = server::Config {
        dist: dist_dir(),
        room_capacity: 2,
        backplane: Some(server::BackplaneConfig::new(&redis.url()).expect("a Redis URL")),
        ..server::Config::default()
    };
    let (addr, shutdown, task) = e2e::relay::start_with(([127, 0, 0, 1], 0).into(), config).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let (status, body) = get(addr, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance {addr}: /healthz still answers {status} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (addr, shutdown, task)
}

/// The value of one un-labelled series in `addr`'s `/metrics`.
async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "instance {addr}: /metrics");
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("instance {addr}: no {series} in /metrics:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_on_two_instances_call_each_other_through_redis() {
    let _turn = CHROME_TURN.lock().await;
    let redis = Redis::start();
    let (one, stop_one, task_one) = instance(&redis).await;
    let (two, stop_two, task_two) = instance(&redis).await;
    let driver = Driver::start().await;
    let callee = driver.browser().await;
    let caller = driver.browser().await;

    // The callee waits on instance 1; the caller opens the same room on instance 2.
    let setup = call_between(
        &callee,
        &format!("http://{one}/?room=across"),
        &caller,
        &format!("http://{two}/?room=across"),
    )
    .await;
    println!(
        "call across two instances: {setup} ms from opening /#true to decoded frames on both sides"
    );
    for page in [&caller, &callee] {
        wait_for_state(page, "the connected status", "connected").await;
    }

    // Each instance holds one of the two people, and the offer, answer and candidates went
    // through Redis both ways: each instance published to the other and received from it.
    for (name, addr) in [("instance 1", one), ("instance 2", two)] {
        assert_eq!(metric(addr, "relay_connections").await, 1, "{name}");
        assert_eq!(metric(addr, "relay_backplane_up").await, 1, "{name}");
        let published = metric(addr, "relay_backplane_published_total").await;
        let received = metric(addr, "relay_backplane_received_total").await;
        println!("{name}: {published} published to Redis, {received} received from it");
        assert!(published > 0, "{name} published nothing to Redis");
        assert!(received > 0, "{name} received nothing from Redis");
    }

    // Hanging up on one instance clears the remote video on the other.
    caller.close().await.expect("close the caller");
    wait_until_alone(
        &callee,
        "the callee on instance 1 to notice the caller on instance 2 left",
    )
    .await;
    callee.close().await.expect("close the callee");
    stop_one.cancel();
    stop_two.cancel();
    task_one.await.expect("instance 1 stops");
    task_two.await.expect("instance 2 stops");
    drop(redis);
}
