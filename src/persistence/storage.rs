//! The file-system operations the journal needs, behind a trait.
//!
//! `RealStorage` is `std::fs`. `SimStorage` keeps files in memory and knows
//! which bytes and which directory entries are durable: `power_cut` drops what
//! was not synced (keeping a random prefix of the unsynced tail: a torn write),
//! and `fail_syncs` makes fdatasync fail, losing the unsynced bytes as Linux
//! does when writeback fails.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file open for appending.
pub trait WritableFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// fdatasync: on return the written bytes survive a power cut.
    fn sync_data(&mut self) -> io::Result<()>;
}

pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The bytes of a file from `offset` on (none past its end): a reader
    /// following a growing file reads each byte once.
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let v = self.read(path)?;
        let at = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
        Ok(v[at..].to_vec())
    }
    /// Creates (or truncates) a file for appending. The directory entry is
    /// durable only after `sync_dir`.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Cuts a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes created, renamed and removed entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// fsync of a file written earlier (by a writer that did not sync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
}

/// `std::fs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealStorage;

struct RealFile(File);

impl WritableFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for RealStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        v.sort();
        Ok(v)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        File::open(path)?.read_to_end(&mut v)?;
        Ok(v)
    }
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    data: Vec<u8>,
    durable_len: usize,
    /// The directory entry survives a power cut.
    entry_durable: bool,
}

#[derive(Debug, Default)]
struct SimState {
    files: BTreeMap<PathBuf, SimFile>,
    /// fdatasync calls still to succeed before they start failing; `None`: never fail.
    syncs_before_failure: Option<u64>,
    /// A failing fdatasync's bytes reach the disk all the same (a device
    /// that wrote them, then reported an error): they survive a power cut.
    failed_syncs_land: bool,
    /// Between `power_cut` and `power_on` the machine is off: every call fails.
    off: bool,
    rng: u64,
}

impl SimState {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic from the seed, so a failing case replays.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn check_on(&self) -> io::Result<()> {
        if self.off {
            Err(io::Error::other("simulated power cut: the machine is off"))
        } else {
            Ok(())
        }
    }

    fn sync_allowed(&mut self) -> bool {
        if self.off {
            return false;
        }
        match &mut self.syncs_before_failure {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

/// An in-memory file system that can lose power. Cloning shares the files.
#[derive(Debug, Clone)]
pub struct SimStorage(Arc<Mutex<SimState>>);

impl SimStorage {
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(SimState {
            rng: seed | 1,
            ..SimState::default()
        })))
    }

    /// A power cut: every file keeps its synced bytes plus a random prefix of
    /// the rest (a torn write); entries never made durable by `sync_dir` vanish.
    pub fn power_cut(&self) {
        let mut s = self.0.lock();
        let paths: Vec<PathBuf> = s.files.keys().cloned().collect();
        for p in paths {
            let r = s.next_rand();
            let f = s.files.get_mut(&p).expect("listed");
            if !f.entry_durable {
                s.files.remove(&p);
                continue;
            }
            let pending = f.data.len() - f.durable_len;
            let keep = if pending == 0 {
                0
            } else {
                (r % (pending as u64 + 1)) as usize
            };
            f.data.truncate(f.durable_len + keep);
            f.durable_len = f.data.len();
        }
        s.off = true;
    }

    /// Power back on after a cut: the files are as the cut left them.
    pub fn power_on(&self) {
        let mut s = self.0.lock();
        s.off = false;
        s.syncs_before_failure = None;
    }

    /// After `n` more successful fdatasyncs, every fdatasync fails.
    pub fn fail_syncs_after(&self, n: u64) {
        self.0.lock().syncs_before_failure = Some(n);
    }

    /// As `fail_syncs_after`, but what a failing fdatasync was to make
    /// durable reaches the disk all the same: a write answered as failed
    /// is found at the next start.
    pub fn fail_syncs_landing_after(&self, n: u64) {
        let mut s = self.0.lock();
        s.syncs_before_failure = Some(n);
        s.failed_syncs_land = true;
    }

    pub fn heal(&self) {
        self.0.lock().syncs_before_failure = None;
    }

    /// Flips one byte of a file (for corruption tests).
    pub fn corrupt(&self, path: &Path, offset: usize) {
        if let Some(f) = self.0.lock().files.get_mut(path) {
            if offset < f.data.len() {
                f.data[offset] ^= 0x5a;
            }
        }
    }

    /// The bytes of a file (tests build torn tails from them).
    pub fn bytes(&self, path: &Path) -> Vec<u8> {
        self.0
            .lock()
            .files
            .get(path)
            .map(|f| f.data.clone())
            .unwrap_or_default()
    }

    /// Replaces a file's bytes, all durable.
    pub fn replace(&self, path: &Path, data: Vec<u8>) {
        let mut s = self.0.lock();
        let f = s.files.entry(path.to_path_buf()).or_default();
        f.durable_len = data.len();
        f.data = data;
        f.entry_durable = true;
    }

    /// How many files `dir` holds.
    pub fn list_len(&self, dir: &Path) -> usize {
        self.0
            .lock()
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .count()
    }

    pub fn file_len(&self, path: &Path) -> Option<usize> {
        self.0.lock().files.get(path).map(|f| f.data.len())
    }
}

struct SimWritable {
    fs: SimStorage,
    path: PathBuf,
}

impl WritableFile for SimWritable {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.0.lock();
        s.check_on()?;
        let f = s
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file vanished"))?;
        f.data.extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.fs.0.lock();
        let ok = s.sync_allowed();
        let s_land = s.failed_syncs_land;
        let f = s
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file vanished"))?;
        if ok {
            f.durable_len = f.data.len();
            Ok(())
        } else {
            if s_land {
                f.durable_len = f.data.len();
            } else {
                // Writeback failed: the kernel drops the dirty pages.
                f.data.truncate(f.durable_len);
            }
            Err(io::Error::other("simulated fdatasync failure"))
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.0.lock();
        s.check_on()?;
        Ok(s.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.0.lock();
        s.check_on()?;
        s.files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.0.lock();
        s.check_on()?;
        let f = s.files.entry(path.to_path_buf()).or_default();
        f.data.clear();
        f.durable_len = 0;
        Ok(Box::new(SimWritable {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.0.lock();
        if !s.sync_allowed() {
            return Err(io::Error::other("simulated fsync failure"));
        }
        let f = s
            .files
            .get_mut(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        f.data.truncate(len as usize);
        f.durable_len = f.data.len();
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        s.check_on()?;
        s.files.remove(path);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        if !s.sync_allowed() {
            return Err(io::Error::other("simulated fsync failure"));
        }
        for (p, f) in s.files.iter_mut() {
            if p.parent() == Some(dir) {
                f.entry_durable = true;
            }
        }
        Ok(())
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        if !s.sync_allowed() {
            return Err(io::Error::other("simulated fsync failure"));
        }
        let f = s
            .files
            .get_mut(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        f.durable_len = f.data.len();
        Ok(())
    }
}
