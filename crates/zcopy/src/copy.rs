//! The common case in one call: [`copy`] and [`copy_with`].

use std::os::fd::{AsFd, BorrowedFd};

use crate::engine::EngineKind;
use crate::error::TransferError;
use crate::fdkind::FdKind;
use crate::plan::{Plan, Preference};
use crate::profile::Profile;
use crate::transfer::{Forced, Report, Transfer};

/// How [`copy_with`] moves bytes: which range, which engine first, which profile,
/// which engines forced off. Start from [`CopyOptions::new`] (the whole source from
/// its current position, the best engine for the fd pair, nothing forced) and
/// change what you need:
///
/// ```
/// use zcopy::{CopyOptions, EngineKind};
///
/// // A MiB from byte 4096 on, splice(2) first.
/// let opts = CopyOptions::new().offset(4096).len(1 << 20).engine(EngineKind::Splice);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    offset: Option<u64>,
    len: Option<u64>,
    preference: Preference,
    profile: Option<Profile>,
    forced: Forced,
    plan: Option<Plan>,
}

impl CopyOptions {
    /// The whole source from its current position, best engine, nothing forced.
    pub fn new() -> CopyOptions {
        CopyOptions::default()
    }

    /// Read a file source from byte `offset`; its file position is neither used nor
    /// moved. Without it, the source is read from its current position onwards
    /// (and the position advances), as `read(2)` does.
    pub fn offset(mut self, offset: u64) -> CopyOptions {
        self.offset = Some(offset);
        self
    }

    /// Move exactly `len` bytes: a source that ends earlier is an error
    /// ([`TransferError::SourceShrank`]). Without it, everything to the end.
    pub fn len(mut self, len: u64) -> CopyOptions {
        self.len = Some(len);
        self
    }

    /// Try `engine` first; the engines that can do the fd pair follow it as
    /// fallbacks, `read-write` last.
    pub fn engine(self, engine: EngineKind) -> CopyOptions {
        self.preference(Preference::Prefer(engine))
    }

    /// [`Preference::Auto`] (the default) or an engine to try first.
    pub fn preference(mut self, preference: Preference) -> CopyOptions {
        self.preference = preference;
        self
    }

    /// Follow this calibration profile's measured order under
    /// [`Preference::Auto`] (see [`Profile::load_default`]).
    pub fn profile(mut self, profile: Profile) -> CopyOptions {
        self.profile = Some(profile);
        self
    }

    /// Engines forced off, to exercise fallbacks.
    pub fn forced(mut self, forced: Forced) -> CopyOptions {
        self.forced = forced;
        self
    }

    /// The range set with [`CopyOptions::offset`] and [`CopyOptions::len`]:
    /// `(offset, len)`.
    pub fn range(&self) -> (Option<u64>, Option<u64>) {
        (self.offset, self.len)
    }

    /// A [`Transfer`] from `src` to `dst` as these options say (the plan for the
    /// pair, the engines forced off), for callers that drive it themselves, a step
    /// at a time, e.g. from an async runtime; [`CopyOptions::range`] is theirs to
    /// honour.
    pub fn transfer(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
    ) -> Result<Transfer, TransferError> {
        let plan = match &self.plan {
            Some(plan) => plan.clone(),
            None => {
                let src_kind = FdKind::of(src).map_err(TransferError::Inspect)?;
                let dst_kind = FdKind::of(dst).map_err(TransferError::Inspect)?;
                Plan::with_profile(
                    Some(src_kind),
                    dst_kind,
                    self.preference,
                    self.len,
                    self.profile.as_ref(),
                )
            }
        };
        Ok(Transfer::with_forced(plan, self.forced.clone()))
    }

    /// Run exactly this plan (its engines in order) instead of choosing one from
    /// the fd pair; the preference and profile are then ignored.
    pub fn plan(mut self, plan: Plan) -> CopyOptions {
        self.plan = Some(plan);
        self
    }
}

/// Copies everything from `src` (from its current position; a file, a pipe or a
/// socket) to `dst` with the best engine for the pair, falling back as needed,
/// and blocks until the source ends. Returns what ran ([`Report`]). A file source
/// is protected by a read lease while it is read, where the kernel grants one.
///
/// ```
/// use std::io::{Read, Seek, Write};
///
/// let mut src = tempfile::tempfile()?;
/// src.write_all(b"hello, zero-copy")?;
/// src.rewind()?;
/// let mut dst = tempfile::tempfile()?;
/// let report = zcopy::copy(&src, &dst)?;
/// assert_eq!(report.bytes, 16);
///
/// let mut got = String::new();
/// dst.rewind()?;
/// dst.read_to_string(&mut got)?;
/// assert_eq!(got, "hello, zero-copy");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn copy(src: impl AsFd, dst: impl AsFd) -> Result<Report, TransferError> {
    copy_with(src, dst, &CopyOptions::new())
}

/// [`copy`] with options: a range, an engine to try first, a profile, engines
/// forced off.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
/// use zcopy::{CopyOptions, EngineKind};
///
/// let mut file = tempfile::tempfile()?;
/// file.write_all(b"0123456789")?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let mut client = TcpStream::connect(listener.local_addr()?)?;
/// let (server, _) = listener.accept()?;
///
/// // Bytes 2..8 of the file, by sendfile(2) where it works here.
/// let opts = CopyOptions::new().offset(2).len(6).engine(EngineKind::Sendfile);
/// let report = zcopy::copy_with(&file, &server, &opts)?;
/// drop(server);
/// let mut got = String::new();
/// client.read_to_string(&mut got)?;
/// assert_eq!(got, "234567");
/// assert_eq!(report.bytes, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn copy_with(
    src: impl AsFd,
    dst: impl AsFd,
    opts: &CopyOptions,
) -> Result<Report, TransferError> {
    let (src, dst) = (src.as_fd(), dst.as_fd());
    let mut t = opts.transfer(src, dst)?;
    t.run(src, opts.offset, dst, opts.len, &mut |_| {}).cloned()
}
