//! Where a dataset's files live: a local folder, or a prefix in a bucket (`s3://`, `gs://`,
//! `az://`), behind one small trait so that the dataset sink says what happens to a part
//! (created, closed, published once committed, removed) and not how.
//!
//! A local folder keeps its guarantees: a part is written as `*.inprogress`, synced when
//! closed and renamed once committed; the manifest is written to a temporary name and
//! renamed; the folder is locked while a run writes it. `file:///abs/path` is that folder.
//!
//! In a bucket nothing can be renamed, and an object appears whole or not at all: a part is
//! streamed as a multipart upload (a few MiB per request, at most [`UPLOADS_IN_FLIGHT`] in
//! flight, never the whole file in memory) and completed when the part is closed, before it
//! is committed. Readers follow the manifest, which names a part only once it is committed:
//! the manifest is the commit. A run killed between completing a part and committing it
//! leaves an object no committed part names, which the next run deletes like any other
//! orphan. An upload the kill cut short never becomes an object; each upload's id is noted in
//! the state store before its first byte is sent, and the next run aborts those left open (a
//! run that fails without being killed aborts its own). Credentials come from the environment (object_store's
//! `from_env` builders); their values are registered with [`crate::redact`] so that no
//! error, log line or report shows them.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use futures_util::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::ChunkReader;

use super::schema::{self, Fields};
use crate::error::{Error, Result};
use crate::state::StateStore;

/// Bytes per upload request of a part (S3 wants at least 5 MiB for all but the last).
pub const UPLOAD_CHUNK_BYTES: usize = 8 << 20;
/// Upload requests of one part in flight at once; the writer waits beyond that.
pub const UPLOADS_IN_FLIGHT: usize = 2;

/// The environment variables whose values are credentials of a bucket.
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
];

/// The files of one dataset: its folder or its bucket prefix. Names are relative to it,
/// with `/` between folders (`createdAt_month=2024-03/part-00000.parquet`).
pub trait DatasetFiles: Send {
    /// The folder, or the URL as written: for messages and the report.
    fn path(&self) -> &Path;

    /// Whether something other than a dataset is there: files, and no manifest.
    fn is_foreign(&self, manifest: &str) -> Result<bool>;

    /// A small file's bytes (the manifest), `None` if there is none.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Replaces a small file (the manifest) whole: readers see the old one or the new one.
    fn write_whole(&self, name: &str, bytes: &[u8]) -> Result<()>;

    /// Starts a part file. What is written is not under `name` before [`PartWriter::close`]
    /// (a bucket) or [`DatasetFiles::publish`] (a folder).
    fn create(&self, name: &str) -> Result<Box<dyn PartWriter>>;

    /// Makes a closed part file visible under its name once its part is committed.
    fn publish(&self, name: &str) -> Result<()>;

    /// Drops a part file that was closed but will not be committed.
    fn discard(&self, name: &str);

    /// Removes a file of a part that is no longer current.
    fn remove(&self, name: &str);

    /// Before a run: what a killed run left. Files of `committed` parts not yet published
    /// are published; other unfinished files, and part files no committed part names
    /// (`is_part` says which names are parts'), are removed.
    fn tidy(&self, committed: &HashSet<String>, is_part: &dyn Fn(&str) -> bool) -> Result<()>;

    /// The columns of a part file.
    fn read_schema(&self, name: &str) -> Result<Fields>;

    /// A file's size in bytes.
    fn size(&self, name: &str) -> Option<u64>;

    /// Reads a Parquet file of the dataset a batch at a time, row group by row group (only
    /// `columns`, by name, when given), handing each batch to `each`: never the whole file
    /// in memory.
    fn read_batches(
        &self,
        name: &str,
        columns: Option<&[&str]>,
        each: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()>;
}

/// Reads Parquet from `reader` (the file `shown`) a batch at a time: see
/// [`DatasetFiles::read_batches`].
fn read_batches_from<R: ChunkReader + 'static>(
    reader: R,
    shown: &Path,
    columns: Option<&[&str]>,
    each: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::output(shown, format!("reading: {e}"));
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| failed(&e))?;
    if let Some(columns) = columns {
        let roots: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    for batch in builder.build().map_err(|e| failed(&e))? {
        each(batch.map_err(|e| failed(&e))?)?;
    }
    Ok(())
}

/// A part file being written: bytes go in through [`Write`].
pub trait PartWriter: Write + Send {
    /// Makes what was written durable: synced to disk, or the upload completed.
    fn close(self: Box<Self>) -> Result<()>;

    /// Gives up on the file (a failed run): removed, or its upload aborted.
    fn abort(&mut self);
}

/// The files of the dataset at `path`: a URL with a scheme (`s3://`, `gs://`, `az://`,
/// `file://`) or a local folder. A bucket notes its open uploads in `state`.
pub fn open(path: &str, state: &Arc<StateStore>) -> Result<Box<dyn DatasetFiles>> {
    match path.split_once("://") {
        Some((scheme, _))
            if scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            let url = url::Url::parse(path)
                .map_err(|e| Error::output(path, format!("not a URL: {e}")))?;
            if url.scheme() == "file" {
                let local = url.to_file_path().map_err(|()| {
                    Error::output(
                        path,
                        "a file:// URL needs an absolute path (file:///data/sessions)",
                    )
                })?;
                return Ok(Box::new(LocalFolder::open(local)?));
            }
            Ok(Box::new(Bucket::open(path, &url, state.clone())?))
        }
        _ => Ok(Box::new(LocalFolder::open(PathBuf::from(path))?)),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn inprogress(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".inprogress");
    PathBuf::from(name)
}

/// A dataset in a local folder, locked while the sink writes it.
pub struct LocalFolder {
    dir: PathBuf,
    /// The folder, locked while this sink writes it: a second run writing the same dataset
    /// refuses. The lock goes with the process however it ends.
    _lock: File,
}

impl LocalFolder {
    fn open(dir: PathBuf) -> Result<LocalFolder> {
        crate::dirs::create(&dir, "dataset folder")?;
        let lock = File::open(&dir).map_err(io(&dir))?;
        crate::dirs::lock_output(&lock, &dir)?;
        Ok(LocalFolder { dir, _lock: lock })
    }
}

/// Files under `dir` (recursively) whose name `wanted` accepts.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>, wanted: &dyn Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out, wanted);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(wanted)
        {
            out.push(path);
        }
    }
}

impl DatasetFiles for LocalFolder {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn is_foreign(&self, manifest: &str) -> Result<bool> {
        Ok(!self.dir.join(manifest).exists()
            && std::fs::read_dir(&self.dir)
                .map_err(io(&self.dir))?
                .next()
                .is_some())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(std::fs::read(self.dir.join(name)).ok())
    }

    fn write_whole(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let temp = inprogress(&path);
        std::fs::write(&temp, bytes).map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))
    }

    fn create(&self, name: &str) -> Result<Box<dyn PartWriter>> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            crate::dirs::create(parent, "dataset folder")?;
        }
        let temp = inprogress(&path);
        let file = File::create(&temp).map_err(io(&temp))?;
        Ok(Box::new(LocalPart { file, temp }))
    }

    fn publish(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        std::fs::rename(inprogress(&path), &path).map_err(io(&path))
    }

    fn discard(&self, name: &str) {
        let _ = std::fs::remove_file(inprogress(&self.dir.join(name)));
    }

    fn remove(&self, name: &str) {
        let path = self.dir.join(name);
        for p in [inprogress(&path), path] {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove {}: {e}", p.display());
            }
        }
    }

    fn tidy(&self, committed: &HashSet<String>, is_part: &dyn Fn(&str) -> bool) -> Result<()> {
        let committed: HashSet<PathBuf> = committed.iter().map(|f| self.dir.join(f)).collect();
        // Files of committed parts not yet renamed are renamed; other leftovers removed.
        let mut left = Vec::new();
        files_under(&self.dir, &mut left, &|name| name.ends_with(".inprogress"));
        for path in left {
            let target = path.with_extension("");
            if committed.contains(&target) {
                std::fs::rename(&path, &target).map_err(io(&target))?;
            } else {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        // Part files no committed part names are what a run killed while replacing or
        // removing a generation left behind: removed, so a glob never reads a row twice.
        let mut orphans = Vec::new();
        files_under(&self.dir, &mut orphans, is_part);
        for path in orphans.into_iter().filter(|p| !committed.contains(p)) {
            tracing::info!("removing {}: no committed part names it", path.display());
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    fn read_schema(&self, name: &str) -> Result<Fields> {
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(io(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::output(&path, format!("reading its schema: {e}")))?;
        schema::from_arrow(builder.schema())
            .ok_or_else(|| Error::output(&path, "a column type this sink does not write"))
    }

    fn size(&self, name: &str) -> Option<u64> {
        std::fs::metadata(self.dir.join(name)).ok().map(|m| m.len())
    }

    fn read_batches(
        &self,
        name: &str,
        columns: Option<&[&str]>,
        each: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(io(&path))?;
        read_batches_from(file, &path, columns, each)
    }
}

/// A part file in a folder, under its `.inprogress` name until published.
struct LocalPart {
    file: File,
    temp: PathBuf,
}

impl Write for LocalPart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl PartWriter for LocalPart {
    fn close(self: Box<Self>) -> Result<()> {
        self.file.sync_all().map_err(io(&self.temp))
    }

    fn abort(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// A dataset under a prefix of a bucket.
pub struct Bucket {
    /// The URL as written (it holds no credentials: those come from the environment).
    url: PathBuf,
    store: Arc<dyn ObjectStore>,
    /// The same store, for uploads whose ids are kept.
    multipart: Arc<dyn MultipartStore>,
    prefix: ObjectPath,
    /// Runs the requests; the sink's thread waits on them.
    runtime: Arc<tokio::runtime::Runtime>,
    /// Where open uploads are noted.
    state: Arc<StateStore>,
}

/// An error of the object store, about `what`, with credentials taken out.
fn store_error(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::output(what, crate::redact::redact(&e.to_string()).into_owned())
}

impl Bucket {
    fn open(text: &str, url: &url::Url, state: Arc<StateStore>) -> Result<Bucket> {
        for name in CREDENTIAL_VARS {
            if let Ok(value) = std::env::var(name) {
                crate::redact::remember(name, &value);
            }
        }
        let path = PathBuf::from(text);
        let unknown = || {
            Error::output(
                &path,
                "a dataset is a folder or a bucket URL: s3://, gs://, az:// or file://",
            )
        };
        let (scheme, prefix) = ObjectStoreScheme::parse(url).map_err(|_| unknown())?;
        let url_text = url.to_string();
        let built = |e: object_store::Error, vars: &str| {
            store_error(
                &path,
                format!("{e} (settings and credentials come from {vars})"),
            )
        };
        fn both<S: ObjectStore + MultipartStore>(
            s: S,
        ) -> (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) {
            let s = Arc::new(s);
            (s.clone(), s)
        }
        let (store, multipart) = match scheme {
            ObjectStoreScheme::AmazonS3 => both(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url_text)
                    .build()
                    .map_err(|e| built(e, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT..."))?,
            ),
            ObjectStoreScheme::GoogleCloudStorage => both(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url_text)
                    .build()
                    .map_err(|e| built(e, "GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS..."))?,
            ),
            ObjectStoreScheme::MicrosoftAzure => both(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url_text)
                    .build()
                    .map_err(|e| built(e, "AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY..."))?,
            ),
            _ => return Err(unknown()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal(format!("cannot start the object store's threads: {e}"))
            })?;
        Ok(Bucket {
            url: path,
            store,
            multipart,
            prefix,
            runtime: Arc::new(runtime),
            state,
        })
    }

    fn location(&self, name: &str) -> ObjectPath {
        name.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// `url/name`, for messages.
    fn shown(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "{}/{name}",
            self.url.display().to_string().trim_end_matches('/')
        ))
    }

    /// Every object under the prefix, by name relative to it.
    fn list(&self) -> Result<Vec<String>> {
        let listed: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(|e| store_error(&self.url, format!("listing: {e}")))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let rel: Vec<_> = m.location.prefix_match(&self.prefix)?.collect();
                Some(rel.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join("/"))
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        match self
            .runtime
            .block_on(self.store.delete(&self.location(name)))
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&self.shown(name), format!("deleting: {e}"))),
        }
    }
}

impl DatasetFiles for Bucket {
    fn path(&self) -> &Path {
        &self.url
    }

    fn is_foreign(&self, manifest: &str) -> Result<bool> {
        let names = self.list()?;
        Ok(!names.is_empty() && !names.iter().any(|n| n == manifest))
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let location = self.location(name);
        let got = self.runtime.block_on(async {
            let got = self.store.get(&location).await?;
            got.bytes().await
        });
        match got {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.shown(name), format!("reading: {e}"))),
        }
    }

    fn write_whole(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&self.location(name), payload))
            .map(|_| ())
            .map_err(|e| store_error(&self.shown(name), format!("writing: {e}")))
    }

    fn create(&self, name: &str) -> Result<Box<dyn PartWriter>> {
        let shown = self.shown(name);
        let location = self.location(name);
        let id = self
            .runtime
            .block_on(self.multipart.create_multipart(&location))
            .map_err(|e| store_error(&shown, format!("starting the upload: {e}")))?;
        self.state
            .begin_upload(&self.url.display().to_string(), location.as_ref(), &id)?;
        Ok(Box::new(BucketPart {
            multipart: self.multipart.clone(),
            state: self.state.clone(),
            location,
            id: Some(id),
            buffer: Vec::new(),
            in_flight: tokio::task::JoinSet::new(),
            sent: Vec::new(),
            next: 0,
            runtime: self.runtime.clone(),
            shown,
        }))
    }

    /// Parts are complete objects once closed: the manifest naming them is their commit.
    fn publish(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    fn discard(&self, name: &str) {
        if let Err(e) = self.delete(name) {
            tracing::warn!("{e}");
        }
    }

    fn remove(&self, name: &str) {
        self.discard(name);
    }

    fn tidy(&self, committed: &HashSet<String>, is_part: &dyn Fn(&str) -> bool) -> Result<()> {
        // Uploads a killed run left open: aborted (a completed one is not found: fine).
        for (location, id) in self.state.open_uploads(&self.url.display().to_string())? {
            let path = ObjectPath::from(location.as_str());
            match self
                .runtime
                .block_on(self.multipart.abort_multipart(&path, &id))
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!("aborted the unfinished upload of {location}");
                    self.state.end_upload(&location, &id)?;
                }
                Err(e) => tracing::warn!(
                    "{}",
                    store_error(
                        &self.url,
                        format!("aborting the unfinished upload of {location}: {e}")
                    )
                ),
            }
        }
        for name in self.list()? {
            let file = name.rsplit('/').next().unwrap_or(&name);
            if (is_part(file) || file.ends_with(".inprogress")) && !committed.contains(&name) {
                tracing::info!(
                    "removing {}: no committed part names it",
                    self.shown(&name).display()
                );
                self.delete(&name)?;
            }
        }
        Ok(())
    }

    /// Reads the footer only: the last 8 bytes say how long the metadata before them is.
    fn read_schema(&self, name: &str) -> Result<Fields> {
        let shown = self.shown(name);
        let location = self.location(name);
        let metadata = self
            .runtime
            .block_on(async {
                let size = self.store.head(&location).await?.size;
                let tail = self
                    .store
                    .get_range(&location, size.saturating_sub(8)..size)
                    .await?;
                if tail.len() < 8 || &tail[4..] != b"PAR1" {
                    return Ok(None);
                }
                let length = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4")));
                let start = size.saturating_sub(8 + length);
                self.store
                    .get_range(&location, start..size - 8)
                    .await
                    .map(Some)
            })
            .map_err(|e| store_error(&shown, format!("reading its schema: {e}")))?
            .ok_or_else(|| Error::output(&shown, "not a Parquet file (no PAR1 footer)"))?;
        let metadata = ParquetMetaDataReader::decode_metadata(&metadata)
            .map_err(|e| Error::output(&shown, format!("reading its schema: {e}")))?;
        let file = metadata.file_metadata();
        let arrow =
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(|e| Error::output(&shown, format!("reading its schema: {e}")))?;
        schema::from_arrow(&arrow)
            .ok_or_else(|| Error::output(&shown, "a column type this sink does not write"))
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.runtime
            .block_on(self.store.head(&self.location(name)))
            .ok()
            .map(|m| m.size)
    }

    fn read_batches(
        &self,
        name: &str,
        columns: Option<&[&str]>,
        each: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let shown = self.shown(name);
        let location = self.location(name);
        let size = self
            .runtime
            .block_on(self.store.head(&location))
            .map_err(|e| store_error(&shown, format!("reading: {e}")))?
            .size;
        let object = BucketObject {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            location,
            size,
            shown: shown.clone(),
        };
        read_batches_from(object, &shown, columns, each)
    }
}

/// An object read in ranges, as the Parquet reader asks for them (the footer, then each
/// page): a few requests per page, never the whole object in memory.
#[derive(Clone)]
struct BucketObject {
    store: Arc<dyn ObjectStore>,
    runtime: Arc<tokio::runtime::Runtime>,
    location: ObjectPath,
    size: u64,
    shown: PathBuf,
}

/// Bytes fetched at once by [`BucketObject::get_read`] (a page header, usually).
const READ_AHEAD_BYTES: u64 = 64 << 10;

impl BucketObject {
    fn range(&self, start: u64, end: u64) -> std::io::Result<bytes::Bytes> {
        self.runtime
            .block_on(self.store.get_range(&self.location, start..end))
            .map_err(|e| {
                std::io::Error::other(store_error(&self.shown, format!("reading: {e}")).to_string())
            })
    }
}

impl parquet::file::reader::Length for BucketObject {
    fn len(&self) -> u64 {
        self.size
    }
}

/// What [`BucketObject::get_read`] gives: fetches [`READ_AHEAD_BYTES`] at a time.
struct BucketRead {
    object: BucketObject,
    at: u64,
    buffer: bytes::Bytes,
}

impl std::io::Read for BucketRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.buffer.is_empty() && self.at < self.object.size {
            let end = (self.at + READ_AHEAD_BYTES.max(buf.len() as u64)).min(self.object.size);
            self.buffer = self.object.range(self.at, end)?;
            self.at = end;
        }
        let n = buf.len().min(self.buffer.len());
        buf[..n].copy_from_slice(&self.buffer.split_to(n));
        Ok(n)
    }
}

impl ChunkReader for BucketObject {
    type T = BucketRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BucketRead> {
        Ok(BucketRead {
            object: self.clone(),
            at: start,
            buffer: bytes::Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.range(start, start + length as u64)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
    }
}

/// A part file streamed to a bucket as a multipart upload: [`UPLOAD_CHUNK_BYTES`] per
/// request, at most [`UPLOADS_IN_FLIGHT`] requests out, so memory holds a few chunks however
/// large the part.
struct BucketPart {
    multipart: Arc<dyn MultipartStore>,
    state: Arc<StateStore>,
    location: ObjectPath,
    /// `None` once completed or aborted.
    id: Option<String>,
    /// The chunk being filled.
    buffer: Vec<u8>,
    in_flight: tokio::task::JoinSet<(usize, object_store::Result<PartId>)>,
    /// Chunks uploaded, by index.
    sent: Vec<(usize, PartId)>,
    /// The index of the next chunk.
    next: usize,
    runtime: Arc<tokio::runtime::Runtime>,
    shown: PathBuf,
}

impl BucketPart {
    /// Waits until at most `n` chunks are in flight.
    fn wait_until(&mut self, n: usize) -> object_store::Result<()> {
        while self.in_flight.len() > n {
            match self.runtime.block_on(self.in_flight.join_next()) {
                Some(Ok((i, part))) => self.sent.push((i, part?)),
                Some(Err(e)) => {
                    return Err(object_store::Error::Generic {
                        store: "upload",
                        source: Box::new(e),
                    });
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Sends the buffer as the next chunk, once fewer than [`UPLOADS_IN_FLIGHT`] are out.
    fn send(&mut self) -> object_store::Result<()> {
        self.wait_until(UPLOADS_IN_FLIGHT - 1)?;
        let Some(id) = self.id.clone() else {
            return Ok(());
        };
        let data = PutPayload::from(std::mem::take(&mut self.buffer));
        let (multipart, location, index) =
            (self.multipart.clone(), self.location.clone(), self.next);
        self.next += 1;
        self.in_flight.spawn_on(
            async move { (index, multipart.put_part(&location, &id, index, data).await) },
            self.runtime.handle(),
        );
        Ok(())
    }
}

impl Write for BucketPart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(UPLOAD_CHUNK_BYTES);
        }
        let n = buf.len().min(UPLOAD_CHUNK_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == UPLOAD_CHUNK_BYTES {
            self.send().map_err(|e| {
                std::io::Error::other(crate::redact::redact(&e.to_string()).into_owned())
            })?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PartWriter for BucketPart {
    fn close(mut self: Box<Self>) -> Result<()> {
        let done = (|| -> object_store::Result<()> {
            if !self.buffer.is_empty() || self.next == 0 {
                self.send()?;
            }
            self.wait_until(0)?;
            let Some(id) = self.id.clone() else {
                return Ok(());
            };
            self.sent.sort_by_key(|(i, _)| *i);
            let parts = self.sent.drain(..).map(|(_, p)| p).collect();
            self.runtime.block_on(
                self.multipart
                    .complete_multipart(&self.location, &id, parts),
            )?;
            Ok(())
        })();
        match done {
            Ok(()) => {
                let id = self.id.take().expect("the upload was open");
                self.state.end_upload(self.location.as_ref(), &id)
            }
            Err(e) => {
                let error = store_error(&self.shown, format!("uploading: {e}"));
                self.abort();
                Err(error)
            }
        }
    }

    fn abort(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        self.in_flight.abort_all();
        let aborted = self.runtime.block_on(async {
            while self.in_flight.join_next().await.is_some() {}
            self.multipart.abort_multipart(&self.location, &id).await
        });
        match aborted {
            Ok(()) => {
                if let Err(e) = self.state.end_upload(self.location.as_ref(), &id) {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => tracing::warn!(
                "{}",
                store_error(&self.shown, format!("aborting the upload: {e}"))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_and_file_urls_are_folders() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        let open = |path: &str| open(path, &state);
        let plain = open(dir.path().join("a").to_str().unwrap()).unwrap();
        assert_eq!(plain.path(), dir.path().join("a"));
        let url = format!("file://{}", dir.path().join("b").display());
        let local = open(&url).unwrap();
        assert_eq!(local.path(), dir.path().join("b"));
        assert!(dir.path().join("b").is_dir());
        let error = open("file://relative/x").err().unwrap().to_string();
        assert!(error.contains("absolute path"), "{error}");
        let error = open("ftp://host/x").err().unwrap().to_string();
        assert!(error.contains("s3://, gs://, az:// or file://"), "{error}");
    }

    #[test]
    fn a_credential_in_the_environment_is_not_in_an_error() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretEXAMPLE";
        // SAFETY: tests of this module are the only ones reading this variable.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
        }
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(dir.path()).unwrap());
        let url = url::Url::parse("s3://b/p").unwrap();
        let bucket = Bucket::open("s3://b/p", &url, state).unwrap();
        // An error text that quotes the secret (as a signing error could) comes out without it.
        let error = store_error(bucket.path(), format!("signature for {secret} rejected"));
        let text = error.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("${AWS_SECRET_ACCESS_KEY}"), "{text}");
    }
}
