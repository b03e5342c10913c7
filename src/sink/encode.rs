//! [`ParquetFile`]: one Parquet file whose columns are encoded on several threads at once.
//!
//! Encoding a row group is mostly per-column work (levels, dictionary, page encoding,
//! compression) and the columns are independent, so a file writer that hands whole columns
//! to a few threads keeps every core busy without splitting the output into more files or
//! changing a byte of it: the column chunks are appended in schema order, exactly as
//! `ArrowWriter` would write them.
//!
//! The threads belong to an [`EncodePool`] that lives as long as the load: threads created
//! per call would each leave an allocator arena behind. Columns are handed out one at a
//! time, so an expensive column (a long string) does not hold back the others. With one
//! thread the work stays on the caller's thread.

use super::spill::SpillPages;
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Threads that encode the columns of row groups, shared by all the files of a load.
pub struct EncodePool {
    /// `None` with one thread: the caller encodes.
    pool: Option<rayon::ThreadPool>,
}

impl EncodePool {
    /// A pool of `threads` threads (one thread: no pool, the caller does the work).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        if threads <= 1 {
            return Ok(EncodePool { pool: None });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("parquet-encode-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(EncodePool { pool: Some(pool) })
    }

    /// No threads: the caller does the work.
    pub fn serial() -> Self {
        EncodePool { pool: None }
    }

    /// Applies `f` to every item, one item per task; results come back in item order.
    pub(crate) fn map<T: Send, R: Send>(
        &self,
        items: Vec<T>,
        f: impl Fn(T) -> R + Sync + Send,
    ) -> Vec<R> {
        match &self.pool {
            Some(pool) if items.len() > 1 => {
                pool.install(|| items.into_par_iter().with_max_len(1).map(f).collect())
            }
            _ => items.into_iter().map(f).collect(),
        }
    }
}

/// Rows handed to a column writer per call (see [`ParquetFile::write`]).
pub const ENCODE_SLICE_ROWS: usize = 1024;

/// A Parquet file being written, one row group at a time, its columns encoded in parallel.
pub struct ParquetFile<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Parquet leaf columns of each top-level field, in schema order.
    leaves_per_field: Vec<usize>,
    row_group_rows: usize,
    pool: Arc<EncodePool>,
    group: Option<RowGroup>,
    rows: u64,
    /// Where completed pages wait for the end of their row group; `None`: on the heap.
    spill: Option<Arc<SpillPages>>,
}

/// The row group in progress: one column writer per leaf column.
struct RowGroup {
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl<W: Write + Send> ParquetFile<W> {
    /// Starts a file on `sink` for batches of `schema`, with row groups of at most
    /// `properties.max_row_group_row_count()` rows, encoded on the threads of `pool`.
    ///
    /// The file carries the Arrow schema in its metadata, as `ArrowWriter`'s files do, so
    /// Arrow readers get back the exact types (time zones, decimal precision).
    pub fn try_new(
        sink: W,
        schema: SchemaRef,
        properties: WriterProperties,
        pool: Arc<EncodePool>,
    ) -> Result<Self> {
        let row_group_rows = properties
            .max_row_group_row_count()
            .unwrap_or(usize::MAX)
            .max(1);
        let (writer, factory) = ArrowWriter::try_new(sink, schema.clone(), Some(properties))?
            .into_serialized_writer()?;
        let leaves_per_field = schema
            .fields()
            .iter()
            .map(|f| leaf_count(f.data_type()))
            .collect();
        Ok(ParquetFile {
            writer,
            factory,
            schema,
            leaves_per_field,
            row_group_rows,
            pool,
            group: None,
            rows: 0,
            spill: None,
        })
    }

    /// Keeps the completed pages of each row group in an unnamed temporary file in `dir`
    /// until the group ends (see [`super::spill`]), instead of on the heap.
    pub fn spill_pages_to(mut self, dir: PathBuf) -> Self {
        let spill = Arc::new(SpillPages::new(dir));
        self.factory = self.factory.with_page_store_factory(spill.clone());
        self.spill = Some(spill);
        self
    }

    /// Encodes on the threads of `pool` from now on.
    pub fn set_pool(&mut self, pool: Arc<EncodePool>) {
        self.pool = pool;
    }

    /// Rows written to the file so far, the row group in progress included.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Memory held by the row group in progress (encoded pages, dictionaries, buffers).
    pub fn memory_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.writers.iter().map(ArrowColumnWriter::memory_size).sum()
        })
    }

    /// Appends `batches` (all of the file's schema), ending a row group whenever it reaches
    /// its row limit.
    pub fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut pending: Vec<RecordBatch> = Vec::new();
        // Rows of the row group in progress, those still pending included.
        let mut in_group = self.group.as_ref().map_or(0, |g| g.rows);
        for batch in batches {
            let mut rest = batch.clone();
            while rest.num_rows() > 0 {
                let n = (self.row_group_rows - in_group).min(rest.num_rows());
                pending.push(rest.slice(0, n));
                rest = rest.slice(n, rest.num_rows() - n);
                in_group += n;
                if in_group >= self.row_group_rows {
                    self.encode(&std::mem::take(&mut pending))?;
                    self.end_row_group()?;
                    in_group = 0;
                }
            }
        }
        if !pending.is_empty() {
            self.encode(&pending)?;
        }
        Ok(())
    }

    /// Encodes `batches` into the row group in progress, one top-level field per task.
    fn encode(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(());
        }
        if self.group.is_none() {
            let index = self.writer.flushed_row_groups().len();
            self.group = Some(RowGroup {
                writers: self.factory.create_column_writers(index)?,
                rows: 0,
            });
        }
        let group = self.group.as_mut().expect("created above");
        let mut tasks: Vec<(FieldRef, usize, &mut [ArrowColumnWriter])> = Vec::new();
        let mut rest = group.writers.as_mut_slice();
        for (i, (field, &n)) in self
            .schema
            .fields()
            .iter()
            .zip(&self.leaves_per_field)
            .enumerate()
        {
            let (mine, others) = rest.split_at_mut(n);
            tasks.push((field.clone(), i, mine));
            rest = others;
        }
        self.pool
            .map(tasks, |(field, i, writers)| {
                // In slices: the parquet crate converts a whole call's decimals into
                // one heap allocation per value before encoding them, so the call size
                // bounds that transient memory.
                let slices = batches.iter().flat_map(|batch| {
                    let column = batch.column(i);
                    (0..column.len())
                        .step_by(ENCODE_SLICE_ROWS)
                        .map(move |start| {
                            column.slice(start, ENCODE_SLICE_ROWS.min(column.len() - start))
                        })
                });
                for column in slices {
                    let leaves = compute_leaves(&field, &column)?;
                    if leaves.len() != writers.len() {
                        return Err(ParquetError::General(format!(
                            "column {} has {} leaves, expected {}",
                            field.name(),
                            leaves.len(),
                            writers.len()
                        )));
                    }
                    for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                        writer.write(leaf)?;
                    }
                }
                Ok(())
            })
            .into_iter()
            .collect::<Result<()>>()?;
        group.rows += rows;
        self.rows += rows as u64;
        Ok(())
    }

    /// Ends the row group in progress (if any): its columns' last pages are encoded in
    /// parallel and the column chunks appended to the file in schema order. A writer between
    /// row groups holds no per-column buffers.
    pub fn end_row_group(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        tracing::trace!(
            rows = group.rows,
            memory_kib = group
                .writers
                .iter()
                .map(ArrowColumnWriter::memory_size)
                .sum::<usize>()
                >> 10,
            "row group complete"
        );
        let chunks: Vec<ArrowColumnChunk> = self
            .pool
            .map(group.writers, ArrowColumnWriter::close)
            .into_iter()
            .collect::<Result<_>>()?;
        let mut row_group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        if let Some(spill) = &self.spill {
            spill.end_row_group();
        }
        Ok(())
    }

    /// Ends the last row group, writes the footer and hands back the sink.
    pub fn into_inner(mut self) -> Result<W> {
        self.end_row_group()?;
        self.writer.into_inner()
    }
}

/// Parquet leaf columns (primitive columns) an Arrow type is stored as.
fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => leaf_count(f.data_type()),
        DataType::Dictionary(_, value) => leaf_count(value),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, ListArray, StringArray, StructArray};
    use arrow::datatypes::{Field, Fields, Int64Type, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn schema() -> SchemaRef {
        let inner: Fields = vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]
        .into();
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Struct(inner), true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ),
            Field::new("t", DataType::Utf8, true),
        ]))
    }

    fn batch(first: i64, rows: usize) -> RecordBatch {
        let ids: Vec<i64> = (first..first + rows as i64).collect();
        let schema = schema();
        let DataType::Struct(inner) = schema.field(1).data_type() else {
            unreachable!()
        };
        let s = StructArray::new(
            inner.clone(),
            vec![
                Arc::new(Int64Array::from_iter(
                    ids.iter().map(|i| (i % 3 != 0).then_some(i * 2)),
                )) as ArrayRef,
                Arc::new(StringArray::from_iter(
                    ids.iter()
                        .map(|i| (i % 5 != 0).then(|| format!("v{}", i % 7))),
                )),
            ],
            None,
        );
        let l =
            ListArray::from_iter_primitive::<Int64Type, _, _>(ids.iter().map(|i| {
                (i % 4 != 0).then(|| (0..i % 3).map(|k| Some(i + k)).collect::<Vec<_>>())
            }));
        let t = StringArray::from_iter(ids.iter().map(|i| Some(format!("row {i} ✓"))));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(s),
                Arc::new(l),
                Arc::new(t),
            ],
        )
        .unwrap()
    }

    fn write(threads: usize, group_rows: usize, batches: &[Vec<RecordBatch>]) -> Vec<u8> {
        write_to(threads, group_rows, batches, None)
    }

    fn write_to(
        threads: usize,
        group_rows: usize,
        batches: &[Vec<RecordBatch>],
        spill: Option<&std::path::Path>,
    ) -> Vec<u8> {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .set_data_page_row_count_limit(64)
            .build();
        let pool = Arc::new(EncodePool::new(threads).unwrap());
        let mut file = ParquetFile::try_new(Vec::new(), schema(), props, pool).unwrap();
        if let Some(dir) = spill {
            file = file.spill_pages_to(dir.into());
        }
        for call in batches {
            file.write(call).unwrap();
        }
        file.into_inner().unwrap()
    }

    fn read(bytes: Vec<u8>) -> (Vec<RecordBatch>, Vec<i64>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let groups = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        (
            builder.build().unwrap().map(Result::unwrap).collect(),
            groups,
        )
    }

    #[test]
    fn parallel_encoding_writes_the_same_file_as_one_thread() {
        let calls = vec![
            vec![batch(0, 10), batch(10, 300)],
            vec![batch(310, 5)],
            vec![batch(315, 700), batch(1015, 1)],
        ];
        let one = write(1, 256, &calls);
        let two = write(2, 256, &calls);
        let four = write(4, 256, &calls);
        assert_eq!(one, two, "byte-identical output whatever the thread count");
        assert_eq!(one, four);
        let (batches, groups) = read(one);
        assert_eq!(groups, vec![256, 256, 256, 248]);
        let all = arrow::compute::concat_batches(&schema(), &batches).unwrap();
        let expected = arrow::compute::concat_batches(&schema(), &[batch(0, 1016)]).unwrap();
        assert_eq!(all, expected);
    }

    #[test]
    fn spilled_pages_make_the_same_file() {
        let calls = vec![vec![batch(0, 300)], vec![batch(300, 700)]];
        let dir = tempfile::tempdir().unwrap();
        let in_memory = write(2, 256, &calls);
        let spilled = write_to(2, 256, &calls, Some(dir.path()));
        assert_eq!(in_memory, spilled, "byte-identical output");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rows_and_empty_files() {
        let props = WriterProperties::builder().build();
        let pool = Arc::new(EncodePool::new(2).unwrap());
        let mut file = ParquetFile::try_new(Vec::new(), schema(), props, pool).unwrap();
        assert_eq!(file.rows(), 0);
        file.write(&[]).unwrap();
        file.end_row_group().unwrap();
        file.write(&[batch(0, 3)]).unwrap();
        assert_eq!(file.rows(), 3);
        let (batches, groups) = read(file.into_inner().unwrap());
        assert_eq!(groups, vec![3]);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    }

    #[test]
    fn leaf_counts_follow_nesting() {
        let counts: Vec<usize> = schema()
            .fields()
            .iter()
            .map(|f| leaf_count(f.data_type()))
            .collect();
        assert_eq!(counts, vec![1, 2, 1, 1]);
    }

    #[test]
    fn the_pool_keeps_order() {
        for threads in [1, 3] {
            let out = EncodePool::new(threads)
                .unwrap()
                .map((0..100).collect(), |i: i32| i * i);
            assert_eq!(out, (0..100).map(|i| i * i).collect::<Vec<_>>());
        }
    }
}
