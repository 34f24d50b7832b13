//! What the engine and a jq worker process say over the worker's stdin and
//! stdout. Every frame is a little-endian `u32` length and that many bytes.
//!
//! * engine -> worker: a [`Header`] (JSON), then one frame per event; the
//!   engine closing stdin ends the worker.
//! * worker -> engine: one answer for the header (compiled, or refused with
//!   why), then one answer per event, flushed when the worker has answered
//!   all it has read (at once for an event sent alone): a tag
//!   byte ([`OUTPUTS`] or [`REFUSED`]), a `u32` count, and that many
//!   frames (the outputs' JSON, or the reason and the detail).

use std::io::{self, BufRead, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::limits::JqLimits;

/// The events a program emitted for one event (none drops it), or the
/// reason and the detail of its refusal.
pub type Answer = Result<Vec<Bytes>, (String, String)>;

pub const OUTPUTS: u8 = 0;
pub const REFUSED: u8 = 1;

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub program: String,
    pub limits: JqLimits,
}

/// The next frame, or `None` when the stream ended cleanly before one.
pub fn read_frame(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut len = [0; 4];
    reader.read_exact(&mut len)?;
    let mut frame = vec![0; u32::from_le_bytes(len) as usize];
    reader.read_exact(&mut frame)?;
    Ok(Some(frame))
}

pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("a frame over 4 GiB"))?;
    writer.write_all(&len.to_le_bytes())?;
    writer.write_all(frame)
}

pub fn write_answer(writer: &mut impl Write, answer: &Answer) -> io::Result<()> {
    match answer {
        Ok(outputs) => {
            writer.write_all(&[OUTPUTS])?;
            writer.write_all(&(outputs.len() as u32).to_le_bytes())?;
            outputs.iter().try_for_each(|out| write_frame(writer, out))
        }
        Err((reason, detail)) => {
            writer.write_all(&[REFUSED])?;
            writer.write_all(&2u32.to_le_bytes())?;
            write_frame(writer, reason.as_bytes())?;
            write_frame(writer, detail.as_bytes())
        }
    }
}

/// One answer, read by the engine.
pub async fn read_answer(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Answer> {
    let tag = reader.read_u8().await?;
    let count = reader.read_u32_le().await? as usize;
    let mut frames = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = reader.read_u32_le().await? as usize;
        let mut frame = vec![0; len];
        reader.read_exact(&mut frame).await?;
        frames.push(Bytes::from(frame));
    }
    match (tag, frames.as_slice()) {
        (OUTPUTS, _) => Ok(Ok(frames)),
        (REFUSED, [reason, detail]) => Ok(Err((text(reason), text(detail)))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a malformed answer from a jq worker",
        )),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
