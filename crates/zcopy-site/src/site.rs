//! The site: what is served (its configuration and root, opened once), shared by
//! all workers.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::access;
use crate::path;
use crate::site_config::SiteConfig;

/// What is served, shared by all workers: the configuration and the root, opened once.
#[derive(Debug)]
pub struct Site {
    /// The root directory, opened once (every path is resolved beneath it). Shared,
    /// so what outlives a request (a WebDAV body's answer) holds it without a dup.
    pub root: Arc<OwnedFd>,
    /// The root's device and inode (fstat once at open).
    pub root_id: (u64, u64),
    /// Settings.
    pub config: SiteConfig,
    /// The root's path as the kernel names it, to tell where a followed symlink led
    /// ([`access::real_rel`]); `None` if unknown (then no link is followed).
    pub root_path: Option<String>,
    /// Memory held by listing pages and archive plans, all workers together.
    pub generated: Arc<crate::pages::MemBudget>,
    /// Sealed snapshots and compressed variants, shared by the workers.
    pub snapshots: Arc<crate::snapshot::Store>,
}

impl Site {
    /// Opens `config.root` as a directory, with a snapshot store of its own
    /// ([`crate::snapshot::default_budget`] bytes).
    pub fn open(config: SiteConfig) -> io::Result<Site> {
        let store = crate::snapshot::Store::new(crate::snapshot::default_budget());
        Site::open_with(config, store)
    }

    /// Opens `config.root` as a directory; snapshots go to `snapshots`.
    pub fn open_with(
        config: SiteConfig,
        snapshots: Arc<crate::snapshot::Store>,
    ) -> io::Result<Site> {
        use rustix::fs::{Mode, OFlags};
        let root = rustix::fs::open(
            &config.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let root_path = access::root_path(&root);
        let st = rustix::fs::fstat(&root)?;
        #[allow(clippy::unnecessary_cast)] // stat field types differ between architectures
        let root_id = (st.st_dev as u64, st.st_ino as u64);
        if root_path.is_none() && config.symlinks != path::SymlinkPolicy::Never {
            tracing::warn!(
                "can't tell where symlinks inside the root lead (/proc/self/fd not readable): \
                 they are refused"
            );
        }
        Ok(Site {
            root: Arc::new(root),
            root_id,
            config,
            root_path,
            generated: crate::pages::MemBudget::new(crate::pages::GENERATED_MAX),
            snapshots,
        })
    }
}
