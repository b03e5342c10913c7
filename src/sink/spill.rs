//! [`SpillPages`]: the encoded pages of a row group in progress, kept in an unnamed
//! temporary file instead of memory.
//!
//! Parquet stores each column chunk contiguously, while rows arrive with all columns
//! interleaved, so a writer holds every completed page of the row group in progress until
//! the group ends. On the heap that memory grows with the row group (≈ 25 MiB of compressed
//! pages for 128 Ki order items); in a temporary file it does not, whatever the row-group
//! size, for the price of writing the compressed pages once more and reading them back
//! (they are still in the page cache by then).
//!
//! The file is created in the directory of the Parquet file being written, so it costs
//! space where the output goes anyway, and unnamed (`O_TMPFILE`, or removed right after
//! creation), so nothing is left behind even by a crash. One file serves all the columns
//! of one row group; it is dropped when the group ends.

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
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
}
