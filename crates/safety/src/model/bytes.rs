//! Reading the model's binary files (the head, the adapters): little-endian fields, one after
//! another, any shortfall an error.

/// The file ended before a field did.
#[derive(Debug)]
pub(crate) struct Truncated;

/// Why a file's opening was refused.
#[derive(Debug)]
pub(crate) enum BadHeader {
    Truncated,
    Magic,
    Version(u32),
}

impl From<Truncated> for BadHeader {
    fn from(_: Truncated) -> Self {
        BadHeader::Truncated
    }
}

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// Reads a file's opening: its magic bytes, then its format version.
    pub(crate) fn header(&mut self, magic: &[u8], version: u32) -> Result<(), BadHeader> {
        if self.take(magic.len())? != magic {
            return Err(BadHeader::Magic);
        }
        match self.u32()? {
            found if found == version => Ok(()),
            found => Err(BadHeader::Version(found)),
        }
    }

    /// A 32-byte digest.
    pub(crate) fn digest(&mut self) -> Result<[u8; 32], Truncated> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.0.len() < n {
            return Err(Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn floats(&mut self, n: usize) -> Result<Vec<f32>, Truncated> {
        let bytes = self.take(n.checked_mul(4).ok_or(Truncated)?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// Whether every byte was read (anything left over means a malformed file).
    pub(crate) fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}
