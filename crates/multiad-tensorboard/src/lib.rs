//! TensorBoard event files, written and read here.
//!
//! An event file (`events.out.tfevents.<time>.<host>.<pid>.<name>`) is a
//! sequence of TFRecords: `u64` length (little-endian), masked CRC-32C of
//! the length, the serialized `Event`, masked CRC-32C of it. The first event
//! names the format version; each later one carries a summary (scalars,
//! images, text) or a session-start marker. TensorBoard reads every such
//! file under `--logdir`, one run per directory.
//!
//! The writer flushes after every event, so a killed process leaves a file
//! whose records up to the last whole one are readable (TensorBoard, like
//! [`read_events`], stops at a torn last record).

mod crc32c;
pub mod proto;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use prost::Message;

pub use crc32c::{crc32c, masked};
use proto::{Dim, Event, Image, PluginData, SessionLog, Summary, SummaryMetadata, TensorProto, TensorShape, Value, ValueKind, What};

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Appends events to a new event file in a directory.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed); `name` ends the file
    /// name (`train`, `test`) so that one directory can hold several.
    pub fn create(dir: &Path, name: &str) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        let secs = now() as u64;
        let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{}.{name}", std::process::id()));
        let f = File::options().create_new(true).write(true).open(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = EventWriter { path, out: BufWriter::new(f) };
        w.write(Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, e: Event) -> Result<()> {
        let data = e.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked(&data).to_le_bytes())?;
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))
    }

    fn summary(&mut self, step: i64, value: Value) -> Result<()> {
        self.write(Event { wall_time: now(), step, what: Some(What::Summary(Summary { value: vec![value] })) })
    }

    /// A point of the scalar chart `tag`.
    pub fn scalar(&mut self, tag: &str, step: i64, v: f32) -> Result<()> {
        self.summary(step, Value { tag: tag.into(), metadata: None, value: Some(ValueKind::SimpleValue(v)) })
    }

    /// Markdown shown by TensorBoard's text plugin.
    pub fn text(&mut self, tag: &str, step: i64, markdown: &str) -> Result<()> {
        let tensor = TensorProto { dtype: 7, tensor_shape: Some(TensorShape { dim: vec![Dim { size: 1 }] }), string_val: vec![markdown.as_bytes().to_vec()] };
        let metadata = SummaryMetadata { plugin_data: Some(PluginData { plugin_name: "text".into(), content: Vec::new() }) };
        self.summary(step, Value { tag: tag.into(), metadata: Some(metadata), value: Some(ValueKind::Tensor(tensor)) })
    }

    /// An RGB image, given as a PNG file's bytes.
    pub fn image_png(&mut self, tag: &str, step: i64, png: &[u8], width: u32, height: u32) -> Result<()> {
        let img = Image { height: height as i32, width: width as i32, colorspace: 3, encoded_image_string: png.to_vec() };
        self.summary(step, Value { tag: tag.into(), metadata: None, value: Some(ValueKind::Image(img)) })
    }

    /// Marks a (re)start at `step`: TensorBoard discards events of steps at
    /// or after it written earlier, e.g. by an attempt that was killed.
    pub fn session_start(&mut self, step: i64) -> Result<()> {
        self.write(Event { wall_time: now(), step, what: Some(What::SessionLog(SessionLog { status: 1 })) })
    }
}

/// What one summary value holds, as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Scalar(f32),
    Text(String),
    /// width, height, PNG bytes.
    Image(u32, u32, Vec<u8>),
}

/// One summary value of an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub step: i64,
    pub wall_time: f64,
    pub tag: String,
    pub entry: Entry,
}

/// Every summary value of an event file, in order, with the CRCs checked.
/// A torn last record (a killed writer) ends the list; a bad CRC elsewhere
/// is an error naming the file and the offset.
pub fn read_events(path: &Path) -> Result<Vec<Record>> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 12 {
            break; // torn header
        }
        let len_bytes = &rest[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap());
        if u32::from_le_bytes(rest[8..12].try_into().unwrap()) != masked(len_bytes) {
            bail!("{}: bad length CRC at byte {at}", path.display());
        }
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(16)).filter(|&e| e <= rest.len()) else {
            break; // torn body
        };
        let data = &rest[12..end - 4];
        if u32::from_le_bytes(rest[end - 4..end].try_into().unwrap()) != masked(data) {
            bail!("{}: bad data CRC in the record at byte {at}", path.display());
        }
        let e = Event::decode(data).with_context(|| format!("{}: the record at byte {at} is not an Event", path.display()))?;
        if let Some(What::Summary(s)) = e.what {
            for v in s.value {
                let entry = match v.value {
                    Some(ValueKind::SimpleValue(x)) => Entry::Scalar(x),
                    Some(ValueKind::Image(i)) => Entry::Image(i.width as u32, i.height as u32, i.encoded_image_string),
                    Some(ValueKind::Tensor(t)) => Entry::Text(t.string_val.first().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()),
                    None => continue,
                };
                out.push(Record { step: e.step, wall_time: e.wall_time, tag: v.tag, entry });
            }
        }
        at += end;
    }
    Ok(out)
}

/// The event files directly in `dir`, sorted by name.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents.")))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(t.path(), "train").unwrap();
        w.scalar("train/loss", 3, 0.25).unwrap();
        w.text("config", 0, "a: 1").unwrap();
        w.image_png("panel", 1, b"\x89PNG fake", 4, 2).unwrap();
        w.session_start(2).unwrap();
        let p = w.path().to_path_buf();
        drop(w);
        let r = read_events(&p).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].tag.as_str(), r[0].step, &r[0].entry), ("train/loss", 3, &Entry::Scalar(0.25)));
        assert_eq!(r[1].entry, Entry::Text("a: 1".into()));
        assert_eq!(r[2].entry, Entry::Image(4, 2, b"\x89PNG fake".to_vec()));
        assert_eq!(event_files(t.path()).unwrap(), vec![p]);
    }

    #[test]
    fn a_torn_last_record_ends_the_file_and_a_flipped_byte_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(t.path(), "x").unwrap();
        for s in 0..3 {
            w.scalar("a", s, s as f32).unwrap();
        }
        let p = w.path().to_path_buf();
        drop(w);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert_eq!(read_events(&p).unwrap().len(), 2);
        let mut bad = bytes.clone();
        let k = bad.len() - 10;
        bad[k] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let e = read_events(&p).unwrap_err().to_string();
        assert!(e.contains("CRC"), "{e}");
    }
}
