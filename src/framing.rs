//! TEMPORARY stand-in until the framing module lands.
#![allow(missing_docs)]
#[derive(Debug, Default, Clone)]
pub struct LineBatch {
    pub data: Vec<u8>,
    pub lines: Vec<Line>,
    pub oversized: Vec<OversizedLine>,
    pub blank_lines: u64,
    pub lines_read: u64,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub number: u64,
    pub start: usize,
    pub end: usize,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedLine {
    pub number: u64,
    pub length: u64,
    pub prefix: Vec<u8>,
}
impl LineBatch {
    pub fn line(&self, l: &Line) -> &[u8] {
        &self.data[l.start..l.end]
    }
}
