//! The sync task of Cluster rate limits ([`crate::side::shared_limits`]): every interval, one
//! pipeline to Redis with one script call per key whose lease needs topping up (tokens taken
//! from the shared buckets, as many as they have room for) and one that counts the data
//! planes syncing. Nothing on the request path waits for it. When Redis fails, the data plane
//! says so once, counts the failed rounds, enforces its share alone, and resumes sharing at
//! the first round Redis answers again.

use std::{sync::Arc, time::Duration};

use redis::{Value, aio::ConnectionManager};
use tokio::time::MissedTickBehavior;

pub use crate::config::RedisSync;
use crate::{
    side::shared_limits::{ClusterLimit, ClusterLink, ToSync},
    state::State,
};

/// Leases tokens from the shared GCRA bucket of each key, on Redis's clock: ARGV[1] requests
/// admitted without a lease are taken first; then for key i (ARGV[3i - 1 .. 3i + 1]: its
/// interval and tolerance in microseconds, the tokens wanted) as many tokens as the bucket has
/// room for, up to those wanted. Answers, per key, the tokens granted and how far ahead of now
/// the bucket's arrival time is (microseconds). Keys expire once their buckets are full again.
const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local unleased = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 1])
  local tolerance = tonumber(ARGV[3 * i])
  local want = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tat = tat + unleased * interval
  local room = math.floor((tolerance + interval - (tat - now)) / interval)
  if room < 0 then room = 0 end
  local grant = math.min(want, room)
  tat = tat + grant * interval
  redis.call('SET', key, string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  out[2 * i - 1] = grant
  out[2 * i] = tat - now
end
return out
";

/// Notes this data plane (ARGV[1]) as syncing, forgets those silent for ARGV[2] ms, and
/// answers how many are left.
const MEMBERS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window * 2)
return redis.call('ZCARD', KEYS[1])
";

const MEMBERS_KEY: &str = "gateway:rl:data-planes";

/// Syncs the Cluster limits of `state` with Redis until the process ends.
pub async fn run(state: Arc<State>, settings: RedisSync) {
    let client = match redis::Client::open(settings.url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "--redis-url: Cluster rate limits stay unshared");
            return;
        }
    };
    let shared = state.side().shared_limits();
    let link = shared.link.clone();
    let id = format!("{:016x}", fastrand::u64(..));
    // A data plane that missed a few rounds is no longer counted among those sharing.
    let window = settings
        .interval
        .saturating_mul(40)
        .max(Duration::from_secs(2));
    let timeout = settings
        .interval
        .saturating_mul(10)
        .max(Duration::from_millis(500));
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<ConnectionManager> = None;
    let mut loaded = false;
    // SHA-1 of each script, what EVALSHA names them by.
    let sync_hash = redis::Script::new(SYNC).get_hash().to_owned();
    let members_hash = redis::Script::new(MEMBERS).get_hash().to_owned();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = link.wake.notified() => {
                // New keys come in bursts: one round for all that arrive meanwhile.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let batch: Vec<(Arc<ClusterLimit>, ToSync)> = shared
            .all()
            .into_iter()
            .flat_map(|limit| {
                let pending = limit.take_pending();
                pending.into_iter().map(move |key| (limit.clone(), key))
            })
            .collect();
        let round = async {
            let conn = match &mut conn {
                Some(conn) => conn,
                None => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1);
                    let made = ConnectionManager::new_with_config(client.clone(), config).await?;
                    conn.insert(made)
                }
            };
            if !loaded {
                for script in [SYNC, MEMBERS] {
                    let () = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(script)
                        .query_async::<String>(conn)
                        .await
                        .map(drop)?;
                }
                loaded = true;
            }
            sync(
                conn,
                (&sync_hash, &members_hash),
                &id,
                window,
                &batch,
                &link,
            )
            .await
        };
        match tokio::time::timeout(timeout, round).await {
            Ok(Ok(())) => {
                if link.set_up(true) {
                    tracing::info!("Redis answers: Cluster rate limits are shared");
                }
            }
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {timeout:?}"),
                };
                // The scripts are loaded again once it answers (it may have restarted empty).
                loaded = false;
                if link.set_up(false) {
                    tracing::warn!(
                        %reason,
                        data_planes = link.data_planes(),
                        "Redis is unreachable: each data plane enforces its share of Cluster rate limits"
                    );
                }
            }
        }
    }
}

/// One round: the pipeline, and the answers applied.
async fn sync(
    conn: &mut ConnectionManager,
    hashes: (&str, &str),
    id: &str,
    window: Duration,
    batch: &[(Arc<ClusterLimit>, ToSync)],
    link: &ClusterLink,
) -> redis::RedisResult<()> {
    let (sync_hash, members_hash) = hashes;
    let mut pipe = redis::pipe();
    pipe.cmd("EVALSHA")
        .arg(members_hash)
        .arg(1)
        .arg(MEMBERS_KEY)
        .arg(id)
        .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    for (limit, key) in batch {
        let cmd = pipe.cmd("EVALSHA").arg(sync_hash).arg(limit.limits.len());
        for i in 0..limit.limits.len() {
            let mut name = Vec::with_capacity(limit.prefix.len() + key.key.len() + 2);
            name.extend_from_slice(limit.prefix.as_bytes());
            name.extend_from_slice(key.key.as_ref());
            name.extend_from_slice(format!(":{i}").as_bytes());
            cmd.arg(name);
        }
        cmd.arg(key.unleased);
        for (i, limit) in limit.limits.iter().enumerate() {
            cmd.arg((limit.interval / 1000).max(1))
                .arg(limit.tolerance / 1000)
                .arg(key.want[i]);
        }
    }
    let answers: Vec<Value> = pipe.query_async(conn).await?;
    link.calls
        .fetch_add(answers.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut answers = answers.into_iter();
    if let Some(Value::Int(n)) = answers.next() {
        link.set_data_planes(u64::try_from(n).unwrap_or(1));
    }
    for ((limit, key), answer) in batch.iter().zip(answers) {
        let Value::Array(ahead) = answer else {
            continue;
        };
        let number = |v: &Value| match v {
            Value::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let grants: Vec<(u64, u64)> = ahead
            .chunks_exact(2)
            .map(|pair| (number(&pair[0]), number(&pair[1]).saturating_mul(1000)))
            .collect();
        limit.granted(key.hash, &grants);
    }
    Ok(())
}
