//! The DER underneath OCSP and certificate signatures: a bounds-checked reader, TLV encoding
//! and GeneralizedTime.

/// `YYYYMMDDHHMMSS[.fff]Z` as seconds since the epoch.
pub(crate) fn generalized_time(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('Z')?;
    let whole = text.split('.').next()?;
    let t = chrono::NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    Some(t.and_utc().timestamp())
}

pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// A DER reader over a sequence of elements; every read is bounds-checked and returns `None`
/// on anything malformed.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(der: &'a [u8]) -> Self {
        Self { rest: der }
    }

    /// The next element as (tag, contents) and its whole encoding.
    pub(crate) fn next_raw(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let all = self.rest;
        let (&tag, after) = all.split_first()?;
        let (&first, mut after) = after.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after.len() < n {
                return None;
            }
            let len = after[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            after = &after[n..];
            len
        };
        if after.len() < len {
            return None;
        }
        let header = all.len() - after.len();
        self.rest = &after[len..];
        Some((tag, &after[..len], &all[..header + len]))
    }

    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        self.next_raw().map(|(tag, contents, _)| (tag, contents))
    }

    /// The contents of the next element, which must have `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }

    /// The whole encoding of the next element, which must have `tag`.
    pub(crate) fn raw(&mut self, tag: u8) -> Option<&'a [u8]> {
        let saved = self.rest;
        match self.next_raw() {
            Some((t, _, all)) if t == tag => Some(all),
            _ => {
                self.rest = saved;
                None
            }
        }
    }

    /// The contents of the next element if it has `tag`; otherwise nothing is consumed.
    pub(crate) fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        let saved = self.rest;
        match self.next() {
            Some((t, contents)) if t == tag => Some(contents),
            _ => {
                self.rest = saved;
                None
            }
        }
    }

    /// A reader over the contents of the SEQUENCE this is.
    pub(crate) fn sequence(mut self) -> Option<Reader<'a>> {
        self.expect(0x30).map(Reader::new)
    }
}
