//! The WebSocket framing the feed speaks (RFC 6455), server side only.
//!
//! Why not a library's: a server's frames are not masked, so a change's
//! frame is the same bytes for every client that follows it. The hub
//! frames each change once and every session writes those bytes as they
//! are (no copy, no per-connection encoder, no write buffer kept per
//! connection). Clients send only control frames in practice (pong,
//! close, ping); anything they send is parsed, bounded and, for data,
//! ignored.

use crate::limits::FEED_CLIENT_FRAME_MAX;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Appends a final, unmasked frame of `payload` to `out`.
pub fn frame_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.extend_from_slice(&header(opcode, payload.len()));
    out.extend_from_slice(payload);
}

/// The header of a final, unmasked frame of `len` payload bytes (2, 4 or
/// 10 bytes, as its length needs).
pub fn header(opcode: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(0x80 | opcode);
    if len < 126 {
        h.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

/// A close frame with `code` and a short `reason` (at most 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    let mut out = Vec::with_capacity(p.len() + 2);
    frame_into(&mut out, OP_CLOSE, &p);
    out
}

/// What a client sent, as the session acts on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Ping(Vec<u8>),
    Pong,
    /// The close code, if any.
    Close(Option<u16>),
    /// A data frame (text, binary or continuation): read and ignored.
    Data,
}

/// Why reading stopped: the close code to answer with, if any.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended or failed: nothing to answer.
    Gone,
    /// A frame breaking RFC 6455 (1002) or too large (1009).
    Protocol(u16, &'static str),
}

/// Reads client frames, keeping a small buffer (grown only for a frame
/// that needs it, up to `FEED_CLIENT_FRAME_MAX`, and given back afterwards).
#[derive(Default)]
pub struct Reader {
    buf: BytesMut,
}

/// The buffer a reader starts with and returns to.
const READ_INITIAL: usize = 256;

impl Reader {
    /// The next frame. Cancel-safe: the only wait is a `read_buf`, which
    /// keeps whatever it read in the buffer.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<Incoming, ReadError> {
        loop {
            if let Some(m) = self.parse()? {
                if self.buf.is_empty() && self.buf.capacity() > 4 * READ_INITIAL {
                    self.buf = BytesMut::new();
                }
                return Ok(m);
            }
            if self.buf.capacity() - self.buf.len() < READ_INITIAL {
                self.buf.reserve(READ_INITIAL);
            }
            match rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(_) => {}
            }
        }
    }

    /// A whole frame off the front of the buffer, if it holds one.
    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0F);
        let masked = b[1] & 0x80 != 0;
        if rsv != 0 {
            return Err(ReadError::Protocol(1002, "reserved bits set"));
        }
        if !masked {
            return Err(ReadError::Protocol(1002, "client frames must be masked"));
        }
        let (len, at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (len > 125 || !fin) {
            return Err(ReadError::Protocol(1002, "bad control frame"));
        }
        if len > FEED_CLIENT_FRAME_MAX {
            return Err(ReadError::Protocol(1009, "frame too large"));
        }
        let total = at + 4 + len;
        if b.len() < total {
            self.buf.reserve(total - b.len());
            return Ok(None);
        }
        let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        let payload: Vec<u8> = if control {
            b[at + 4..total]
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ mask[i % 4])
                .collect()
        } else {
            Vec::new()
        };
        self.buf.advance(total);
        Ok(Some(match opcode {
            OP_PING => Incoming::Ping(payload),
            OP_PONG => Incoming::Pong,
            OP_CLOSE => Incoming::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            OP_CONTINUATION | OP_TEXT | OP_BINARY => Incoming::Data,
            _ => return Err(ReadError::Protocol(1002, "unknown opcode")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as RFC 6455 says a client sends it (masked).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]));
        out
    }

    async fn read_all(bytes: Vec<u8>) -> Vec<Result<Incoming, ReadError>> {
        let mut r = Reader::default();
        let mut src: &[u8] = &bytes;
        let mut out = Vec::new();
        loop {
            let m = r.next(&mut src).await;
            let end = m.is_err();
            out.push(m);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(header(OP_TEXT, 5), vec![0x81, 5]);
        assert_eq!(header(OP_TEXT, 126), vec![0x81, 126, 0, 126]);
        assert_eq!(header(OP_TEXT, 65_535), vec![0x81, 126, 0xff, 0xff]);
        assert_eq!(
            header(OP_TEXT, 65_536),
            vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            close_frame(1001, "bye"),
            vec![0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']
        );
    }

    #[tokio::test]
    async fn client_frames_are_unmasked_and_bounded() {
        let mut wire = client_frame(true, OP_PING, b"hello");
        wire.extend(client_frame(true, OP_PONG, b""));
        wire.extend(client_frame(false, OP_TEXT, &[b'x'; 300]));
        wire.extend(client_frame(true, OP_CONTINUATION, &[b'y'; 9_700]));
        wire.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let got = read_all(wire).await;
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Ping(b"hello".to_vec())),
                Ok(Incoming::Pong),
                Ok(Incoming::Data),
                Ok(Incoming::Data),
                Ok(Incoming::Close(Some(1000))),
                Err(ReadError::Gone),
            ]
        );
        let big = read_all(client_frame(
            true,
            OP_BINARY,
            &vec![0; FEED_CLIENT_FRAME_MAX + 1],
        ))
        .await;
        assert_eq!(big, vec![Err(ReadError::Protocol(1009, "frame too large"))]);
        let mut unmasked = client_frame(true, OP_PING, b"");
        unmasked[1] &= 0x7F;
        unmasked.truncate(2);
        assert_eq!(
            read_all(unmasked).await,
            vec![Err(ReadError::Protocol(
                1002,
                "client frames must be masked"
            ))]
        );
        let long_ping = read_all(client_frame(true, OP_PING, &[0; 126])).await;
        assert_eq!(
            long_ping,
            vec![Err(ReadError::Protocol(1002, "bad control frame"))]
        );
    }

    #[tokio::test]
    async fn a_frame_split_across_reads_is_put_back_together() {
        let wire = client_frame(true, OP_PING, b"split me");
        let (a, b) = wire.split_at(3);
        let (mut c, mut s) = tokio::io::duplex(64);
        let mut r = Reader::default();
        use tokio::io::AsyncWriteExt;
        c.write_all(a).await.expect("write");
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.next(&mut s)).await;
        assert!(pending.is_err(), "half a frame is not a frame");
        c.write_all(b).await.expect("write");
        assert_eq!(
            r.next(&mut s).await,
            Ok(Incoming::Ping(b"split me".to_vec()))
        );
    }
}
