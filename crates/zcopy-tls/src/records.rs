//! Where TLS record boundaries fall in a byte stream (to know when rustls holds
//! no partial record, the precondition for handing a socket to the kernel).

/// Counts bytes of a stream of TLS records.
#[derive(Debug, Clone, Default)]
pub struct RecordTracker {
    /// Header bytes of the current record seen so far (up to 5).
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current record still to come.
    body_left: usize,
}

impl RecordTracker {
    /// Account for `bytes`, the next bytes of the stream.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 5 {
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.have = 0;
            }
        }
    }

    /// The bytes so far end exactly at a record boundary.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: u16) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + len as usize, 0xee);
        r
    }

    #[test]
    fn boundaries_in_any_split() {
        let mut stream = record(3);
        stream.extend(record(0));
        stream.extend(record(300));
        let ends = [8, 13, stream.len()];
        for chunk in 1..stream.len() {
            let mut t = RecordTracker::default();
            let mut pos = 0;
            for piece in stream.chunks(chunk) {
                t.advance(piece);
                pos += piece.len();
                assert_eq!(
                    t.at_boundary(),
                    pos == 0 || ends.contains(&pos),
                    "{chunk} {pos}"
                );
            }
        }
    }
}
