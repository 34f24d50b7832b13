//! An event's payload as one parse read it (ADR 0095): a tape of tokens
//! that a later stage walks through serde instead of parsing the text
//! again. `validate` writes one tape per batch as its quick yes reads each
//! event; the lake builds its columns from it.
//!
//! Strings the parse read in place (no escapes) are places in the payload;
//! others are copied, unescaped, into the tape's own text. A tape belongs
//! to the payload bytes it was read from: [`ParsedPayload::reader`] hands
//! it out only for those very bytes (it keeps them alive, so a payload a
//! transform replaced can never be taken for them).

use std::{fmt, ops::Range, sync::Arc};

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Kinds of token: the top four bits of a tape word.
const NULL: u64 = 0;
const FALSE: u64 = 1;
const TRUE: u64 = 2;
/// The next word holds the number's bits.
const U64: u64 = 3;
const I64: u64 = 4;
const F64: u64 = 5;
/// A string read in place: start and length in the payload.
const IN_PAYLOAD: u64 = 6;
/// A string with escapes, unescaped into the tape's text.
const IN_TAPE: u64 = 7;
const OBJECT: u64 = 8;
const ARRAY: u64 = 9;
/// The end of the innermost open object or array.
const END: u64 = 10;

const KIND_SHIFT: u32 = 60;
/// A string's start and length take 30 bits each.
const PLACE_BITS: u32 = 30;
const PLACE_MASK: u64 = (1 << PLACE_BITS) - 1;
/// Payloads and tape texts longer than this are not kept.
const MAX_PLACE: usize = PLACE_MASK as usize;

fn word(kind: u64) -> u64 {
    kind << KIND_SHIFT
}

/// A batch's parsed payloads: one word per value, member name or bracket
/// (two per number), each event a range of words.
#[derive(Debug, Default)]
pub struct Tape {
    words: Vec<u64>,
    text: String,
    /// Each kept event's words and the payload they were read from.
    events: Vec<(Range<u32>, Bytes)>,
}

/// Writes a batch's tape, one event at a time: [`begin`](Self::begin),
/// the event's tokens, then [`keep`](Self::keep) or
/// [`drop_event`](Self::drop_event).
#[derive(Debug, Default)]
pub struct TapeWriter {
    tape: Tape,
    /// Where the event being written starts (words, text).
    start: (usize, usize),
    /// The payload's address range, to tell strings read in place.
    payload: Range<usize>,
    /// The event cannot be kept (a place past what a word holds).
    spoiled: bool,
}

impl TapeWriter {
    /// A writer with room for the parses of about `payload_bytes` of text.
    pub fn for_bytes(payload_bytes: usize) -> Self {
        let mut writer = TapeWriter::default();
        // The bench's events average eight bytes of text per token.
        writer.tape.words.reserve(payload_bytes / 6);
        writer
    }

    /// Starts the tokens of the event whose payload is `payload`.
    pub fn begin(&mut self, payload: &[u8]) {
        self.drop_event();
        let base = payload.as_ptr() as usize;
        self.payload = base..base + payload.len();
        self.spoiled = payload.len() > MAX_PLACE;
    }

    /// Ends the event begun last, whose payload is `payload`: its index
    /// in the tape, or `None` if it could not be written (a place past
    /// what a word holds).
    pub fn keep(&mut self, payload: &Bytes) -> Option<u32> {
        let words = u32::try_from(self.start.0).ok()?..u32::try_from(self.tape.words.len()).ok()?;
        let index = u32::try_from(self.tape.events.len()).ok()?;
        let same = payload.as_ptr() as usize == self.payload.start && payload.len() == self.payload.len();
        if self.spoiled || !same {
            self.drop_event();
            return None;
        }
        self.tape.events.push((words, payload.clone()));
        self.start = (self.tape.words.len(), self.tape.text.len());
        Some(index)
    }

    /// Forgets the event begun last.
    pub fn drop_event(&mut self) {
        self.tape.words.truncate(self.start.0);
        self.tape.text.truncate(self.start.1);
    }

    /// The tape of every kept event.
    pub fn finish(mut self) -> Arc<Tape> {
        self.drop_event();
        Arc::new(self.tape)
    }

    pub fn null(&mut self) {
        self.tape.words.push(word(NULL));
    }

    pub fn bool(&mut self, v: bool) {
        self.tape.words.push(word(if v { TRUE } else { FALSE }));
    }

    pub fn u64(&mut self, v: u64) {
        self.tape.words.extend([word(U64), v]);
    }

    pub fn i64(&mut self, v: i64) {
        self.tape.words.extend([word(I64), v as u64]);
    }

    pub fn f64(&mut self, v: f64) {
        self.tape.words.extend([word(F64), v.to_bits()]);
    }

    /// A string value or member name.
    pub fn str(&mut self, s: &str) {
        let at = s.as_ptr() as usize;
        let (kind, start) = if at >= self.payload.start && at + s.len() <= self.payload.end {
            (IN_PAYLOAD, at - self.payload.start)
        } else {
            let start = self.tape.text.len();
            self.tape.text.push_str(s);
            (IN_TAPE, start)
        };
        if start > MAX_PLACE || s.len() > MAX_PLACE {
            self.spoiled = true;
        }
        let place = ((start as u64 & PLACE_MASK) << PLACE_BITS) | (s.len() as u64 & PLACE_MASK);
        self.tape.words.push(word(kind) | place);
    }

    pub fn object(&mut self) {
        self.tape.words.push(word(OBJECT));
    }

    pub fn array(&mut self) {
        self.tape.words.push(word(ARRAY));
    }

    /// Closes the innermost open object or array.
    pub fn end(&mut self) {
        self.tape.words.push(word(END));
    }
}

/// An event's parsed payload: its place in a batch's tape.
#[derive(Clone)]
pub struct ParsedPayload {
    tape: Arc<Tape>,
    event: u32,
}

impl fmt::Debug for ParsedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedPayload(event {} of its tape)", self.event)
    }
}

impl ParsedPayload {
    /// Event `event` of `tape`, as [`TapeWriter::keep`] numbered it.
    pub fn new(tape: Arc<Tape>, event: u32) -> Self {
        ParsedPayload { tape, event }
    }

    /// A serde deserializer over the parse of `payload`, if `payload` is
    /// the very text it was read from (the event's payload was not
    /// replaced since); strings read in place are borrowed from it.
    pub fn reader<'a>(&'a self, payload: &'a str) -> Option<TapeReader<'a>> {
        let (words, read_from) = self.tape.events.get(self.event as usize)?;
        let same = payload.as_ptr() == read_from.as_ptr() && payload.len() == read_from.len();
        let words = self.tape.words.get(words.start as usize..words.end as usize)?;
        same.then_some(TapeReader {
            words,
            at: 0,
            payload,
            text: &self.tape.text,
        })
    }
}

/// A serde deserializer of one event's tokens.
pub struct TapeReader<'de> {
    words: &'de [u64],
    at: usize,
    payload: &'de str,
    text: &'de str,
}

impl<'de> TapeReader<'de> {
    /// Checks that every token was read.
    pub fn end(&self) -> Result<(), TapeError> {
        if self.at == self.words.len() {
            Ok(())
        } else {
            Err(TapeError::new("tokens after the value"))
        }
    }

    fn next(&mut self) -> Result<u64, TapeError> {
        let word = *self
            .words
            .get(self.at)
            .ok_or_else(|| TapeError::new("the tape ends early"))?;
        self.at += 1;
        Ok(word)
    }

    fn peek_kind(&self) -> Option<u64> {
        self.words.get(self.at).map(|w| w >> KIND_SHIFT)
    }

    fn string(&self, source: &'de str, word: u64) -> Result<&'de str, TapeError> {
        let start = ((word >> PLACE_BITS) & PLACE_MASK) as usize;
        let len = (word & PLACE_MASK) as usize;
        source
            .get(start..start + len)
            .ok_or_else(|| TapeError::new("a string outside its text"))
    }

    /// Skips the rest of the object or array just opened.
    fn skip_open(&mut self) -> Result<(), TapeError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? >> KIND_SHIFT {
                OBJECT | ARRAY => depth += 1,
                END => depth -= 1,
                U64 | I64 | F64 => {
                    self.next()?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A tape that does not hold what its reader asks for, or a visitor's refusal.
#[derive(Debug)]
pub struct TapeError(String);

impl TapeError {
    fn new(what: &str) -> Self {
        TapeError(what.to_string())
    }
}

impl fmt::Display for TapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TapeError {}

impl de::Error for TapeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TapeError(msg.to_string())
    }
}

impl<'de> Deserializer<'de> for &mut TapeReader<'de> {
    type Error = TapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TapeError> {
        let word = self.next()?;
        match word >> KIND_SHIFT {
            NULL => visitor.visit_unit(),
            FALSE => visitor.visit_bool(false),
            TRUE => visitor.visit_bool(true),
            U64 => visitor.visit_u64(self.next()?),
            I64 => visitor.visit_i64(self.next()? as i64),
            F64 => visitor.visit_f64(f64::from_bits(self.next()?)),
            IN_PAYLOAD => visitor.visit_borrowed_str(self.string(self.payload, word)?),
            IN_TAPE => visitor.visit_borrowed_str(self.string(self.text, word)?),
            OBJECT => {
                let mut members = Open {
                    reader: self,
                    ended: false,
                };
                let value = visitor.visit_map(&mut members)?;
                members.close()?;
                Ok(value)
            }
            ARRAY => {
                let mut items = Open {
                    reader: self,
                    ended: false,
                };
                let value = visitor.visit_seq(&mut items)?;
                items.close()?;
                Ok(value)
            }
            _ => Err(TapeError::new("a bracket closed where a value belongs")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TapeError> {
        match self.next()? >> KIND_SHIFT {
            OBJECT | ARRAY => self.skip_open()?,
            U64 | I64 | F64 => {
                self.next()?;
            }
            _ => {}
        }
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier
    }
}

/// The members of an object or the items of an array being read.
struct Open<'r, 'de> {
    reader: &'r mut TapeReader<'de>,
    ended: bool,
}

impl Open<'_, '_> {
    /// Whether the next token closes the object or array (then read).
    fn at_end(&mut self) -> bool {
        if !self.ended && self.reader.peek_kind() == Some(END) {
            self.reader.at += 1;
            self.ended = true;
        }
        self.ended
    }

    /// After the visitor: the rest the visitor left is skipped.
    fn close(self) -> Result<(), TapeError> {
        if self.ended { Ok(()) } else { self.reader.skip_open() }
    }
}

impl<'de> MapAccess<'de> for &mut Open<'_, 'de> {
    type Error = TapeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, TapeError> {
        if self.at_end() {
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TapeError> {
        seed.deserialize(&mut *self.reader)
    }
}

impl<'de> SeqAccess<'de> for &mut Open<'_, 'de> {
    type Error = TapeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, TapeError> {
        if self.at_end() {
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

#[cfg(test)]
mod tests;
