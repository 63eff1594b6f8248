//! A local stand-in for the parts of Gleap's API v3 the tool uses: sessions, tickets and
//! messages, with Gleap's auth, quota and quirks, plus seeded fault injection (server errors,
//! connection resets, answers lost after the write) to prove a client loses and duplicates
//! nothing. It is the target of `--emulator` runs, of our integration tests and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> gleap_etl::Result<()> {
//! use gleap_etl::emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! println!("{} {} {}", emulator.base_url(), emulator.api_key(), emulator.project());
//! emulator.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod helpcentre;
pub mod index;
pub mod limits;
pub mod query;
pub mod quirks;
pub mod server;
pub mod store;
pub mod uploads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use api::{App, Shared};
pub use limits::{FaultConfig, Quota};
use limits::{Faults, QuotaWindow, Stats};
pub use quirks::Quirks;
use store::Store;

/// How to run an emulator.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Where to listen. Default `127.0.0.1:0` (loopback, a free port).
    pub addr: SocketAddr,
    /// The API key clients must send. Default: generated.
    pub api_key: Option<String>,
    /// The project id clients must send. Default: generated.
    pub project: Option<String>,
    /// Requests per window; `None` for no limit. Default Gleap's 1000 per 60 s.
    pub quota: Option<Quota>,
    /// Send `Retry-After` with 429 (Gleap does not promise it). Default true.
    pub retry_after: bool,
    pub faults: FaultConfig,
    /// Ways to be harder than Gleap may be (page caps, ignored skip and filters, index lag).
    pub quirks: Quirks,
    /// Load the state from this JSON file at start (if it exists) and save it there.
    pub data_file: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    /// Called after each request carried out, with the running count (tests).
    pub on_request: Option<api::RequestHook>,
    /// Synthetic sessions to insert at start, after the data file is loaded (benchmarks):
    /// the same ones for the same `faults.seed`, see `Store::generate_sessions`. Default 0.
    pub generate_sessions: usize,
    /// The team members `GET /projects/users` lists (objects with `id` or `_id` and
    /// `email`), before a data file's. Default: `store::default_team()`.
    pub team: Option<Vec<serde_json::Map<String, Value>>>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: None,
            project: None,
            quota: Some(Quota::GLEAP),
            retry_after: true,
            faults: FaultConfig::default(),
            quirks: Quirks::default(),
            data_file: None,
            clock: Arc::new(SystemClock),
            on_request: None,
            generate_sessions: 0,
            team: None,
        }
    }
}

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    saver: Option<JoinHandle<()>>,
    data_file: Option<PathBuf>,
}

impl Emulator {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator> {
        let seed = config.faults.seed;
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_0f91_ea9a);
        let api_key = config
            .api_key
            .clone()
            .unwrap_or_else(|| format!("emu_{:016x}{:016x}", rng.u64(..), rng.u64(..)));
        let project = config.project.clone().unwrap_or_else(|| {
            (0..24)
                .map(|_| char::from_digit(rng.u32(..16), 16).expect("a hex digit"))
                .collect()
        });
        let mut store = Store::new(seed);
        store.set_index_lag(config.quirks.index_lag);
        if let Some(team) = &config.team {
            store.set_team(team.clone());
        }
        if let Some(path) = &config.data_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let data: Value = serde_json::from_str(&text)
                .map_err(|e| Error::input(path.display().to_string(), e))?;
            store
                .load(&data)
                .map_err(|e| Error::input(path.display().to_string(), e))?;
        }
        if config.generate_sessions > 0 {
            let started = std::time::Instant::now();
            store.generate_sessions(config.generate_sessions);
            tracing::info!(
                "emulator: generated {} sessions in {:.2?}",
                config.generate_sessions,
                started.elapsed()
            );
        }
        let app = Arc::new(App {
            api_key,
            project,
            retry_after: config.retry_after,
            quirks: config.quirks.clone(),
            clock: config.clock.clone(),
            shared: Mutex::new(Shared {
                store,
                quota: QuotaWindow::new(config.quota),
                faults: Faults::new(config.faults),
                stats: Stats::default(),
                uploads: Default::default(),
            }),
            dirty: AtomicBool::new(false),
            on_request: config.on_request.clone(),
            handled: std::sync::atomic::AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| Error::Emulator {
                message: format!("cannot listen on {}: {e}", config.addr),
            })?;
        let addr = listener.local_addr().map_err(|e| Error::Emulator {
            message: format!("cannot tell the address it listens on: {e}"),
        })?;
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(server::serve(
            listener,
            api::router(app.clone()),
            stopped.clone(),
        ));
        let saver = config
            .data_file
            .clone()
            .map(|path| tokio::spawn(save_while_running(app.clone(), path, stopped)));
        Ok(Emulator {
            addr,
            app,
            stop,
            server,
            saver,
            data_file: config.data_file,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v3`: what `GLEAP_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.app.api_key
    }

    pub fn project(&self) -> &str {
        &self.app.project
    }

    /// What `/__emulator/stats` answers.
    pub fn stats(&self) -> Value {
        self.app.stats()
    }

    /// The files uploaded (`POST /uploads`): `{id, name, type, size, xxh3}` each.
    pub fn uploads(&self) -> Value {
        self.app.uploads()
    }

    /// The app behind the API (tests watch it from a request hook).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// What `/__emulator/dump` answers.
    pub fn dump(&self) -> Value {
        self.app.dump()
    }

    /// Updates `n` sessions (all when there are fewer) as a PUT would at the clock's now:
    /// `updatedAt` becomes now and `customData.seats` goes up by one. Which ones depends on
    /// the seed and on the calls before; returns their ids (in stored order). For tests of
    /// incremental exports, with `EmulatorConfig::generate_sessions`.
    pub fn touch_sessions(&self, n: usize) -> Vec<String> {
        self.app.touch_sessions(n)
    }

    /// Sets fields of session `id` as a PUT would at the clock's now (`updatedAt` moves), but
    /// keeps fields Gleap's table does not name, which a PUT drops: a session as Gleap
    /// answers it once it has added a field. False when there is no such session. For tests
    /// of schema evolution in exports.
    pub fn set_session_fields(&self, id: &str, fields: serde_json::Map<String, Value>) -> bool {
        self.app.set_session_fields(id, fields)
    }

    /// Swaps the messages at positions `a` and `b` (from 0) of a ticket's conversation, as
    /// if they had been created the other way round; false when there are none there. For
    /// tests of `verify`.
    pub fn swap_messages(&self, ticket: &str, a: usize, b: usize) -> bool {
        self.app.swap_messages(ticket, a, b)
    }

    /// Stops serving and saves the data file.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        if let Some(saver) = self.saver {
            let _ = saver.await;
        }
        if let Some(path) = &self.data_file {
            save(&self.app, path)?;
        }
        Ok(())
    }
}

/// Saves the data file every second while something changed, so that a rehearsal can be
/// inspected even if the emulator is killed.
async fn save_while_running(app: Arc<App>, path: PathBuf, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if app.dirty.swap(false, Ordering::Relaxed)
                    && let Err(e) = save(&app, &path)
                {
                    tracing::warn!("emulator: {e}");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Writes the state atomically: to a temporary file, then renamed.
fn save(app: &App, path: &Path) -> Result<()> {
    let data = serde_json::to_vec_pretty(&app.dump()).expect("the state is JSON");
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(&temp, data).map_err(|e| Error::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))
}

/// An emulator serving on its own thread, for callers without an async runtime
/// (`gleap-etl run --emulator`).
pub struct BackgroundEmulator {
    pub base_url: String,
    pub api_key: String,
    pub project: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Value>>>,
}

impl BackgroundEmulator {
    /// Starts an emulator on a thread of its own.
    pub fn start(config: EmulatorConfig) -> Result<BackgroundEmulator> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(String, String, String)>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gleap-emulator".into())
            .spawn(move || -> Result<Value> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::internal(format!("cannot start the emulator's runtime: {e}"))
                    })?;
                runtime.block_on(async move {
                    let emulator = match Emulator::start(config).await {
                        Ok(e) => e,
                        Err(e) => {
                            // `start` answers with the error; the thread's own result is
                            // then never read.
                            let _ = ready_tx.send(Err(e));
                            return Ok(Value::Null);
                        }
                    };
                    let _ = ready_tx.send(Ok((
                        emulator.base_url(),
                        emulator.api_key().to_string(),
                        emulator.project().to_string(),
                    )));
                    let _ = stopped.await;
                    let stats = emulator.stats();
                    emulator.shutdown().await?;
                    Ok(stats)
                })
            })
            .map_err(|e| Error::internal(format!("cannot start the emulator thread: {e}")))?;
        let (base_url, api_key, project) = ready_rx
            .recv()
            .map_err(|_| Error::internal("the emulator thread ended before it started"))??;
        Ok(BackgroundEmulator {
            base_url,
            api_key,
            project,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops it (saving its data file) and returns its final stats.
    pub fn stop(mut self) -> Result<Value> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::internal("the emulator thread panicked")),
            None => Ok(Value::Null),
        }
    }
}

impl Drop for BackgroundEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
