//! A throw-away redis-server for one test: no persistence, its own temp dir, killed on drop.
//!
//! Like etcd, redis-server cannot report a port it bound to `:0`, so the port is picked free
//! just before it starts; if it was taken in between, it is started again on another. A restart
//! keeps the port, so that the data planes' `--redis-url` stays valid.

use std::{ffi::OsString, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    eventually::{patience, try_eventually},
    process::Process,
    util::free_port,
};

/// The message when no redis-server binary can be found.
pub const INSTALL_REDIS: &str =
    "install redis-server (Debian/Ubuntu: apt-get install redis-server) or set REDIS_SERVER_BIN";

/// How long one [`RedisServer::command`] may take: a local Redis answers at once, and a
/// killed one must fail the call, not hang it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or killed) redis-server; killed when dropped, its directory removed.
#[derive(Debug)]
pub struct RedisServer {
    process: Process,
    port: u16,
    // Dropped after the process.
    dir: TempDir,
}

// === impl RedisServer ===

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let program = redis_bin();
        let mut dir = tempfile::Builder::new()
            .prefix("gateway-test-redis-")
            .tempdir()
            .expect("a temp dir for redis");
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port();
            let mut process = Process::new("redis", &program, redis_args(&dir, port));
            process.set_tail_lines(20);
            let mut redis = RedisServer { process, port, dir };
            match redis.spawn_and_wait().await {
                Ok(()) => return redis,
                Err(error) => {
                    let log = format!("{}{}", redis.process.stdout(), redis.process.stderr());
                    redis.process.kill().await;
                    if !log.contains("Address already in use") {
                        panic!("redis-server did not start: {error:#}");
                    }
                    last_error = Some(error);
                    let RedisServer { dir: d, .. } = redis;
                    dir = d;
                }
            }
        }
        panic!("redis-server did not start on free ports: {last_error:?}");
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.process.spawn()?;
        let addr = self.addr();
        let process = &mut self.process;
        try_eventually(patience(), || {
            let running = process.is_running();
            async move {
                if !running {
                    bail!("redis-server exited");
                }
                let pong = command_at(addr, &["PING"]).await?;
                anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
                Ok(())
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.process.log_tail()))
    }

    /// `redis://127.0.0.1:<port>`, for `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills redis-server (SIGKILL); its port is kept for [`RedisServer::restart`]. It comes
    /// back empty: nothing is saved.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts redis-server again on the same port (killing it first if it runs) and waits
    /// until it answers PING.
    pub async fn restart(&mut self) {
        self.process.kill().await;
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e:#}"));
    }

    /// Runs one command over a fresh connection and returns its reply as text: a status or
    /// bulk string as is, an integer in decimal, nil as `(nil)`, an array's elements one a
    /// line (nested arrays flattened). An error reply is an `Err`.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        command_at(self.addr(), args).await
    }

    /// The underlying process, for its logs.
    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// `REDIS_SERVER_BIN`, or `redis-server` on `PATH`; panics with how to install it otherwise.
pub fn redis_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "REDIS_SERVER_BIN={} is not a file: {INSTALL_REDIS}",
            bin.display()
        );
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("redis-server not found on PATH: {INSTALL_REDIS}"))
}

fn redis_args(dir: &TempDir, port: u16) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    for (flag, value) in [
        ("--port", port.to_string()),
        ("--bind", "127.0.0.1".to_owned()),
        ("--dir", dir.path().display().to_string()),
        ("--save", String::new()),
        ("--appendonly", "no".to_owned()),
        ("--daemonize", "no".to_owned()),
        // Logs go to stdout, which the Process keeps.
        ("--logfile", String::new()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args
}

/// One command to the Redis at `addr`, in RESP over a fresh TCP connection.
pub async fn command_at(addr: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to redis at {addr}"))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).await?;
        let mut buf = Vec::new();
        loop {
            if let Parsed::Reply(reply, _) = parse(&buf)? {
                return reply;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("redis closed the connection mid-reply");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Ok(result) => result.with_context(|| format!("redis {args:?}")),
        Err(_) => bail!("redis {args:?}: no reply within {COMMAND_TIMEOUT:?}"),
    }
}

/// What [`parse`] found at the start of a buffer.
enum Parsed {
    /// Not all of the reply has arrived yet.
    Incomplete,
    /// A whole reply (an `Err`: a Redis error reply) and the bytes it takes.
    Reply(anyhow::Result<String>, usize),
}

/// The reply at the start of `buf`; an `Err` is a malformed one.
fn parse(buf: &[u8]) -> anyhow::Result<Parsed> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(Parsed::Incomplete);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        bail!("an empty RESP line");
    };
    let line = std::str::from_utf8(line).context("a RESP line that is not UTF-8")?;
    let after = end + 2;
    Ok(match kind {
        b'+' | b':' => Parsed::Reply(Ok(line.to_owned()), after),
        b'-' => Parsed::Reply(Err(anyhow::anyhow!("redis error: {line}")), after),
        b'$' => {
            let Ok(len) = usize::try_from(line.parse::<i64>().context("a bulk length")?) else {
                return Ok(Parsed::Reply(Ok("(nil)".to_owned()), after));
            };
            if buf.len() < after + len + 2 {
                return Ok(Parsed::Incomplete);
            }
            let text = String::from_utf8_lossy(&buf[after..after + len]).into_owned();
            Parsed::Reply(Ok(text), after + len + 2)
        }
        b'*' => {
            let count: i64 = line.parse().context("an array length")?;
            let mut at = after;
            let mut items = Vec::new();
            for _ in 0..count.max(0) {
                let Parsed::Reply(item, used) = parse(&buf[at..])? else {
                    return Ok(Parsed::Incomplete);
                };
                items.push(item.unwrap_or_else(|e| format!("(error) {e:#}")));
                at += used;
            }
            Parsed::Reply(Ok(items.join("\n")), at)
        }
        other => bail!("an unknown RESP type {:?}", other as char),
    })
}
