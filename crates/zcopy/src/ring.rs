//! An io_uring for a server's event loop (accepts, receives into provided buffers,
//! sends, file reads, splices, polls), and file mappings whose residency can be asked
//! before their pages are sent.

pub use crate::sys::event_ring::{
    Completion, Desc, Event, EventRing, FdHold, OpId, RecvBuf, RingFd, RingSize, probe,
};
pub use crate::sys::mem::{Mapping, page_size, trim_heap};

mod send;
pub use send::{
    BufPool, CHUNK, FileSend, MAP_CHUNK, MAP_MIN, PIPE_SIZE, Progress, READ_BUDGET, ROOM_MIN,
    SPARE_BYTES,
};
