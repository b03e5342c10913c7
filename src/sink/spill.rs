//! Temporary files that keep memory flat while Parquet files are written:
//! - [`SpillPages`]: the encoded pages of a row group in progress;
//! - [`SpilledRows`]: rows of a partition waiting for enough company to make a whole row
//!   group.
//!
//! Both are unnamed files in the directory of the Parquet files being written, so they
//! cost space where the output goes anyway and nothing is left behind even by a crash
//! (`O_TMPFILE`, or removed right after creation).
//!
//! ## Pages
//!
//! Parquet stores each column chunk contiguously, while rows arrive with all columns
//! interleaved, so a writer holds every completed page of the row group in progress until
//! the group ends. On the heap that memory grows with the row group (≈ 25 MiB of compressed
//! pages for 128 Ki order items); in a temporary file it does not, whatever the row-group
//! size, for the price of writing the compressed pages once more and reading them back
//! (they are still in the page cache by then).
//!
//! One file serves all the columns of one row group; it is dropped when the group ends.
//!
//! ## Rows
//!
//! Rows of a partitioned export arrive in no order of partition. Written as they come, a
//! partition's row groups would be as small as the memory budget divided by the number of
//! partitions (a few thousand rows over three years of months), slow to write and to read.
//! Instead, a partition's gathered rows are set aside in its own file, as Arrow IPC
//! streams (a copy of the buffers, no encoding), until they make a whole row group, and
//! read back one batch at a time as that row group is written.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Hands every column writer of a Parquet file a [`PageStore`] backed by the temporary file
/// of the row group in progress.
#[derive(Debug)]
pub struct SpillPages {
    dir: PathBuf,
    current: Mutex<Option<Arc<SpillFile>>>,
}

/// One row group's temporary file. Columns are encoded on several threads at once: each
/// page gets its own range, reserved with an atomic add, and is written with a positioned
/// write, so no lock is held while bytes are copied.
#[derive(Debug)]
struct SpillFile {
    file: File,
    end: AtomicU64,
}

impl SpillPages {
    /// Pages will be kept in unnamed files created in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        SpillPages {
            dir,
            current: Mutex::new(None),
        }
    }

    /// Forgets the current row group's file; the file is closed (and its space freed)
    /// once the last of its column chunks has been appended to the Parquet file.
    pub fn end_row_group(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<SpillFile>>> {
        // The guarded value is a plain handle, valid whatever a panicking holder was doing.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PageStoreFactory for SpillPages {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        Ok(Box::new(self.store()?))
    }
}

impl SpillPages {
    /// A store for one column chunk, in the row group's file (created if need be).
    fn store(&self) -> Result<SpillStore> {
        let mut current = self.lock();
        let file = match &*current {
            Some(file) => file.clone(),
            None => {
                let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
                    io_error(
                        format!("creating a temporary page file in {}", self.dir.display()),
                        e,
                    )
                })?;
                let file = Arc::new(SpillFile {
                    file,
                    end: AtomicU64::new(0),
                });
                *current = Some(file.clone());
                file
            }
        };
        Ok(SpillStore {
            file,
            blobs: Vec::new(),
        })
    }
}

/// The pages of one column chunk: where each lies in the row group's file.
struct SpillStore {
    file: Arc<SpillFile>,
    blobs: Vec<(u64, usize)>,
}

impl PageStore for SpillStore {
    fn put(&mut self, value: Bytes) -> Result<PageKey> {
        let offset = self
            .file
            .end
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        self.file
            .file
            .write_all_at(&value, offset)
            .map_err(|e| io_error("writing a page to a temporary page file".into(), e))?;
        let key = PageKey::new(self.blobs.len() as u64);
        self.blobs.push((offset, value.len()));
        Ok(key)
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let &(offset, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.blobs.get(i))
            .ok_or_else(|| ParquetError::General(format!("unknown page key {}", key.get())))?;
        let mut page = vec![0; len];
        self.file
            .file
            .read_exact_at(&mut page, offset)
            .map_err(|e| io_error("reading a page back from a temporary page file".into(), e))?;
        Ok(Bytes::from(page))
    }
}

/// An I/O error as the parquet crate carries it, with what was being done; the OS error
/// (such as "No space left on device") stays in the message.
fn io_error(action: String, error: std::io::Error) -> ParquetError {
    ParquetError::External(format!("{action}: {error}").into())
}

/// Rows of one partition set aside in an unnamed temporary file, oldest first.
pub struct SpilledRows {
    file: Arc<File>,
    schema: SchemaRef,
    /// Byte range of each IPC stream written, oldest first.
    segments: Vec<(u64, u64)>,
    end: u64,
    rows: usize,
}

impl SpilledRows {
    /// An empty set of rows of `schema`, in a new unnamed file in `dir`.
    pub fn create(dir: &Path, schema: SchemaRef) -> std::io::Result<Self> {
        Ok(SpilledRows {
            file: Arc::new(tempfile::tempfile_in(dir)?),
            schema,
            segments: Vec::new(),
            end: 0,
            rows: 0,
        })
    }

    /// Rows set aside so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends `batch` (of the schema given at creation) after the rows already set aside.
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let mut file: &File = &self.file;
        // Writes go to the file's own position, always its end: reads use positioned reads
        // and never move it.
        let mut writer =
            StreamWriter::try_new(BufWriter::with_capacity(1 << 20, file), &self.schema)?;
        writer.write(batch)?;
        writer.finish()?;
        writer.into_inner()?.flush()?;
        let end = file.stream_position()?;
        self.segments.push((self.end, end - self.end));
        self.end = end;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The rows set aside, in the order they were appended, read back one batch at a time;
    /// the file is closed (and its space freed) when the iterator is dropped.
    pub fn into_batches(self) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send {
        let file = self.file;
        self.segments.into_iter().flat_map(move |(start, len)| {
            let segment = BufReader::with_capacity(
                1 << 20,
                Segment {
                    file: file.clone(),
                    at: start,
                    end: start + len,
                },
            );
            match StreamReader::try_new(segment, None) {
                Ok(reader) => Box::new(reader) as Box<dyn Iterator<Item = _> + Send>,
                Err(error) => Box::new(std::iter::once(Err(error))),
            }
        })
    }
}

/// Batches of rows set aside, as they are read back.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>;

type ReadRequest = (
    SpilledRows,
    std::sync::mpsc::SyncSender<Result<RecordBatch, ArrowError>>,
);

/// A thread that reads rows set aside back one batch ahead of their consumer, so that
/// reading (positioned reads, IPC decoding) overlaps with encoding the batch before. One
/// thread serves a whole load, one consumer at a time: a thread per file would each get an
/// allocator arena of its own (glibc), each keeping the memory freed in it.
pub struct ReadAhead {
    requests: Option<std::sync::mpsc::Sender<ReadRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Self> {
        let (requests, incoming) = std::sync::mpsc::channel::<ReadRequest>();
        let thread = std::thread::Builder::new()
            .name("spill-read".into())
            .spawn(move || {
                for (rows, reply) in incoming {
                    for batch in rows.into_batches() {
                        if reply.send(batch).is_err() {
                            break;
                        }
                    }
                }
            })?;
        Ok(ReadAhead {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// The rows of `rows`, oldest first, read one batch ahead. The consumer must take them
    /// all or drop the iterator before the next call, which waits for it otherwise.
    pub fn read(&self, rows: SpilledRows) -> Batches {
        // A rendezvous: the thread holds the one batch it has read until it is asked for.
        let (reply, batches) = std::sync::mpsc::sync_channel(0);
        match &self.requests {
            Some(requests) => match requests.send((rows, reply)) {
                Ok(()) => Box::new(batches.into_iter()),
                // The thread is gone (it cannot panic short of a bug): read here.
                Err(std::sync::mpsc::SendError((rows, _))) => Box::new(rows.into_batches()),
            },
            None => Box::new(rows.into_batches()),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One IPC stream inside a [`SpilledRows`] file, read with positioned reads.
struct Segment {
    file: Arc<File>,
    at: u64,
    end: u64,
}

impl Read for Segment {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        if len == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..len], self.at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_back_as_written_from_several_stores_of_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let pages = SpillPages::new(dir.path().into());
        let mut a = pages.store().unwrap();
        let mut b = pages.store().unwrap();
        assert!(Arc::ptr_eq(&a.file, &b.file), "one file per row group");
        let ka = a.put(Bytes::from_static(b"first page of a")).unwrap();
        let kb = b.put(Bytes::from_static(b"b")).unwrap();
        let ka2 = a.put(Bytes::new()).unwrap();
        let ka3 = a.put(Bytes::from(vec![7u8; 100_000])).unwrap();
        assert_eq!(b.take(kb).unwrap(), Bytes::from_static(b"b"));
        assert_eq!(a.take(ka3).unwrap(), Bytes::from(vec![7u8; 100_000]));
        assert_eq!(a.take(ka2).unwrap(), Bytes::new());
        assert_eq!(a.take(ka).unwrap(), Bytes::from_static(b"first page of a"));
        assert!(
            a.take(PageKey::new(9)).is_err(),
            "an unknown key is an error"
        );
        assert_eq!(a.memory_size(), 0, "nothing is held in memory");
        pages.end_row_group();
        let c = pages.store().unwrap();
        assert!(
            !Arc::ptr_eq(&a.file, &c.file),
            "the next row group has a new file"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the files have no name"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let pages = SpillPages::new("/nonexistent/spill".into());
        let error = pages.store().err().unwrap().to_string();
        assert!(error.contains("/nonexistent/spill"), "{error}");
    }

    #[test]
    fn spilled_rows_come_back_in_order() {
        use arrow::array::{Int64Array, ListArray, StringArray};
        use arrow::datatypes::{DataType, Field, Int64Type, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
                true,
            ),
        ]));
        let batch = |first: i64, rows: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter(
                        (first..first + rows).map(|i| (i % 3 != 0).then(|| format!("row {i}"))),
                    )),
                    Arc::new(Int64Array::from_iter_values(first..first + rows)),
                    Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                        (first..first + rows).map(|i| (i % 2 == 0).then(|| vec![Some(i), None])),
                    )),
                ],
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut spilled = SpilledRows::create(dir.path(), schema.clone()).unwrap();
        let written = [batch(0, 10), batch(10, 1), batch(11, 5000).slice(100, 300)];
        for b in &written {
            spilled.append(b).unwrap();
        }
        assert_eq!(spilled.rows(), 311);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "unnamed");
        let back: Vec<RecordBatch> = spilled.into_batches().map(Result::unwrap).collect();
        assert_eq!(back, written);
        let reader = ReadAhead::start().unwrap();
        for round in 0..2 {
            let mut rows = SpilledRows::create(dir.path(), schema.clone()).unwrap();
            for b in &written {
                rows.append(b).unwrap();
            }
            let back: Vec<RecordBatch> = reader.read(rows).map(Result::unwrap).collect();
            assert_eq!(back, written, "read ahead, round {round}");
        }
        // A consumer that stops early does not hold up the next one.
        let mut rows = SpilledRows::create(dir.path(), schema.clone()).unwrap();
        for b in &written {
            rows.append(b).unwrap();
        }
        drop(reader.read(rows).next());
        let mut rows = SpilledRows::create(dir.path(), schema.clone()).unwrap();
        rows.append(&written[0]).unwrap();
        assert_eq!(reader.read(rows).count(), 1);
    }

    #[test]
    fn a_spill_file_in_a_missing_directory_is_an_error() {
        let schema = Arc::new(arrow::datatypes::Schema::empty());
        assert!(SpilledRows::create(Path::new("/nonexistent/spill"), schema).is_err());
    }
}
