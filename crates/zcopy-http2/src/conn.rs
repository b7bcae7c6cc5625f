//! The connection state machine: [`Conn::feed`] takes the peer's bytes and queues
//! [`Event`]s and the frames that answer them; the caller answers requests with
//! [`Conn::send_headers`] and [`Conn::send_data`] within [`Conn::capacity`], and
//! writes [`Conn::out`] to the peer.
//!
//! Request bodies: a stream's DATA payloads are held ([`Conn::body`], announced by
//! [`Event::Data`]) until the caller takes them ([`Conn::consume`]) or says it does
//! not want them ([`Conn::discard_body`]). Both receive windows, the stream's and
//! the connection's, are credited only for bytes taken or thrown away, so a slow
//! consumer slows the peer down, and what is held is bounded by the windows we
//! advertise: at most [`Settings::initial_window`] per stream and
//! [`Settings::connection_window`] per connection. A content-length that the DATA
//! bytes do not match is a stream error (PROTOCOL_ERROR, RFC 9113 §8.1.1). A
//! response that ends while its request body is still coming lets the peer send
//! what the stream's window still allows (thrown away, no more credit), and resets
//! the stream with NO_ERROR (RFC 9113 §8.1) when the body would go beyond it.
//!
//! Budgets (each a field of [`Settings`]): resets of either side, control frames
//! that ask for an answer or achieve nothing, header blocks, decoded header lists,
//! concurrent streams. Running out of one ends the connection with GOAWAY
//! ENHANCE_YOUR_CALM; the caller sees [`Conn::is_closed`].

use std::collections::VecDeque;

use zcopy_http1::fields::ResponseHead;

use crate::frame::{
    self, Code, Frame, FrameError, HEADER_LEN, Header, MAX_WINDOW, flag, kind, setting,
};
use crate::hpack::{self, Decoder, Encoder};
use crate::request::{Builder, Head, Priority};

/// The limits a connection runs under.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise; streams past it are refused.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: the body bytes a stream may
    /// send before the caller takes its body ([`Conn::accept_body`]). Kept small
    /// so that streams waiting for their turn can't hold the whole connection
    /// window (which would starve the streams being received: a deadlock).
    pub initial_window: u32,
    /// A stream's window once the caller takes its body ([`Conn::accept_body`]).
    pub body_window: u32,
    /// The connection's receive window (advertised by a WINDOW_UPDATE at start).
    pub connection_window: u32,
    /// Largest frame payload we take (SETTINGS_MAX_FRAME_SIZE; the default 16384).
    pub max_frame_size: u32,
    /// Our HPACK dynamic table (SETTINGS_HEADER_TABLE_SIZE; the default 4096).
    pub header_table_size: usize,
    /// Largest decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE) → 431 (16 KiB,
    /// as HTTP/1's largest head).
    pub max_header_list: usize,
    /// Largest encoded header block, HEADERS and CONTINUATION together.
    pub max_header_block: usize,
    /// Most CONTINUATION frames in one header block.
    pub max_continuations: u32,
    /// Stream resets (the peer's and ours) the connection may have beyond one per
    /// response finished.
    pub reset_budget: u32,
    /// Control frames that ask for an answer or achieve nothing (SETTINGS, PING,
    /// PRIORITY, unknown types, empty DATA, WINDOW_UPDATE with nothing to send)
    /// beyond one per response frame sent.
    pub control_budget: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_concurrent_streams: 128,
            initial_window: 64 * 1024,
            body_window: 1 << 20,
            connection_window: 16 << 20,
            max_frame_size: frame::DEFAULT_MAX_FRAME,
            header_table_size: 4096,
            max_header_list: 16 * 1024,
            max_header_block: 64 * 1024,
            max_continuations: 32,
            reset_budget: 200,
            control_budget: 1000,
        }
    }
}

/// What the caller learns from the peer's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A request head is complete: answer it on `stream`.
    Request {
        /// Stream.
        stream: u32,
        /// The checked header list.
        head: Head,
    },
    /// A header list too large for us: answer 431 on `stream`.
    TooLarge {
        /// Stream.
        stream: u32,
    },
    /// The stream is gone (reset by the peer, or by us): drop its response.
    Reset {
        /// Stream.
        stream: u32,
    },
    /// Request body bytes, or its end, arrived on `stream`: see [`Conn::body`].
    Data {
        /// Stream.
        stream: u32,
    },
}

#[derive(Debug)]
struct Stream {
    id: u32,
    /// The peer may still send on it (no END_STREAM yet).
    recv_open: bool,
    /// We still respond on it (no END_STREAM sent yet).
    send_open: bool,
    /// HEADERS sent without END_STREAM: DATA is to come.
    sending_body: bool,
    send_window: i64,
    recv_window: i64,
    expect_len: Option<u64>,
    recv_len: u64,
    /// Body bytes received and not yet taken by the caller.
    body: Vec<u8>,
    /// The caller does not want the body: its bytes are thrown away as they come.
    discard: bool,
    /// The caller stopped taking the body (refused mid-way): once the answer
    /// ends, the stream is reset if the body still comes, whatever the window.
    stop: bool,
    /// Bytes taken or thrown away and not yet credited to the peer.
    uncredited: i64,
    /// The window kept open for the peer: `initial_window`, `body_window` once
    /// the body is taken.
    window: i64,
    /// Its priority (RFC 9218), if the peer signalled one (a `priority` field,
    /// a PRIORITY_UPDATE).
    priority: Option<Priority>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the 24-byte preface.
    Preface,
    /// Waiting for the peer's first SETTINGS.
    FirstSettings,
    /// Serving.
    Open,
    /// A connection error or the end: write `out`, then close.
    Closed,
}

/// A header block still being received (HEADERS without END_HEADERS).
#[derive(Debug)]
struct Partial {
    stream: u32,
    block: Vec<u8>,
    end_stream: bool,
    frames: u32,
    /// Trailers (a second HEADERS on an open stream): decoded and dropped.
    trailers: bool,
    /// On a half-closed (remote) stream: decoded (HPACK stays in step), then the
    /// stream is reset STREAM_CLOSED.
    refused: bool,
}

/// One HTTP/2 server connection.
#[derive(Debug)]
pub struct Conn {
    s: Settings,
    state: State,
    /// Bytes to write to the peer.
    pub out: Vec<u8>,
    events: VecDeque<Event>,
    decoder: Decoder,
    /// Our responses' HPACK state (its table follows the peer's setting).
    encoder: Encoder,
    streams: Vec<Stream>,
    partial: Option<Partial>,
    /// Highest stream id the peer opened.
    last_peer_stream: u32,
    /// Streams we reset lately: frames the peer had in flight for them are dropped
    /// without another reset.
    recently_reset: VecDeque<u32>,
    /// Streams closed lately (ours or the peer's doing): a HEADERS on one is
    /// STREAM_CLOSED, on an identifier never used PROTOCOL_ERROR.
    recently_closed: VecDeque<u32>,
    /// The peer's settings.
    peer_initial_window: i64,
    peer_max_frame: u32,
    send_window: i64,
    recv_window: i64,
    /// Bytes received on the connection that were taken or thrown away and not yet
    /// credited to the peer (body bytes still held are not).
    recv_uncredited: i64,
    reset_tokens: u32,
    control_tokens: u32,
    /// GOAWAY sent: no new streams; the connection ends when the last one does.
    goaway_sent: bool,
    /// Why the connection failed, if it did.
    error: Option<Code>,
    scratch: Vec<u8>,
    /// PRIORITY_UPDATEs for streams not open yet (RFC 9218 §7.1), applied when
    /// they open; with the streams open, at most `max_concurrent_streams`.
    early_priorities: Vec<(u32, Priority)>,
    /// Heads of requests answered, their buffers kept for the next ones
    /// ([`Conn::recycle`]; at most [`SPARE_HEADS`]).
    spare: Vec<Head>,
}

/// Request heads kept for their buffers, per connection.
const SPARE_HEADS: usize = 8;

impl Conn {
    /// A server connection; our SETTINGS and connection WINDOW_UPDATE are queued.
    pub fn new(s: Settings) -> Conn {
        let mut out = Vec::new();
        frame::write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, s.max_concurrent_streams),
                (setting::INITIAL_WINDOW_SIZE, s.initial_window),
                (setting::MAX_FRAME_SIZE, s.max_frame_size),
                (setting::MAX_HEADER_LIST_SIZE, s.max_header_list as u32),
                // RFC 9218 priorities instead (RFC 9218 §2.1).
                (setting::NO_RFC7540_PRIORITIES, 1),
            ],
        );
        if s.connection_window > 65_535 {
            frame::write_window_update(&mut out, 0, s.connection_window - 65_535);
        }
        Conn {
            s,
            state: State::Preface,
            out,
            events: VecDeque::new(),
            decoder: Decoder::new(s.header_table_size, s.max_header_list),
            encoder: Encoder::new(),
            streams: Vec::new(),
            partial: None,
            last_peer_stream: 0,
            recently_reset: VecDeque::new(),
            recently_closed: VecDeque::new(),
            peer_initial_window: 65_535,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            send_window: 65_535,
            recv_window: s.connection_window.max(65_535) as i64,
            recv_uncredited: 0,
            reset_tokens: s.reset_budget,
            control_tokens: s.control_budget,
            goaway_sent: false,
            error: None,
            scratch: Vec::new(),
            early_priorities: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Takes the peer's bytes; returns how many were used (the rest is an
    /// incomplete frame: give it again with more). Nothing is used once closed.
    pub fn feed(&mut self, buf: &[u8]) -> usize {
        let mut used = 0;
        if self.state == State::Preface {
            let n = buf.len().min(frame::PREFACE.len());
            if buf[..n] != frame::PREFACE[..n] {
                self.fail(Code::Protocol);
                return buf.len();
            }
            if n < frame::PREFACE.len() {
                return 0;
            }
            used = n;
            self.state = State::FirstSettings;
        }
        while self.state != State::Closed {
            let rest = &buf[used..];
            let Some(h) = Header::parse(rest) else {
                break;
            };
            if h.len > self.s.max_frame_size {
                self.fail(Code::FrameSize);
                return buf.len();
            }
            let end = HEADER_LEN + h.len as usize;
            if rest.len() < end {
                break;
            }
            self.frame(h, &rest[HEADER_LEN..end]);
            used += end;
        }
        if self.state == State::Closed {
            return buf.len();
        }
        used
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A connection error or the end: write [`Conn::out`], then close.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the connection failed (the GOAWAY code sent), if it did.
    pub fn error(&self) -> Option<Code> {
        self.error
    }

    /// No stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.partial.is_none()
    }

    /// Streams open.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Some response has body bytes to send and no window to send them in: the
    /// peer must open it (the caller times this out).
    pub fn stalled(&self) -> bool {
        self.streams
            .iter()
            .any(|s| s.sending_body && (s.send_window <= 0 || self.send_window <= 0))
    }

    /// The priority the peer gave stream `id` (RFC 9218: its `priority` field,
    /// or a PRIORITY_UPDATE since), `None` when it gave none (or the stream is
    /// gone).
    pub fn priority(&self, id: u32) -> Option<Priority> {
        self.streams.iter().find(|s| s.id == id)?.priority
    }

    /// Graceful end (shutdown, reload): GOAWAY NO_ERROR naming the last stream
    /// taken; the streams open finish, then [`Conn::is_closed`].
    pub fn go_away(&mut self) {
        if self.goaway_sent || self.state == State::Closed {
            return;
        }
        self.goaway_sent = true;
        frame::write_goaway(&mut self.out, self.last_peer_stream, Code::NoError);
        self.close_if_done();
    }

    fn close_if_done(&mut self) {
        if self.goaway_sent && self.streams.is_empty() && self.partial.is_none() {
            self.state = State::Closed;
        }
    }

    /// A connection error: GOAWAY with `code`, then close.
    fn fail(&mut self, code: Code) {
        if self.state == State::Closed {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_peer_stream, code);
        self.goaway_sent = true;
        self.error = Some(code);
        self.state = State::Closed;
        self.events.clear();
        self.streams.clear();
    }

    fn stream(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    fn remove_if_done(&mut self, id: u32) {
        if let Some(i) = self.streams.iter().position(|s| s.id == id)
            && !self.streams[i].recv_open
            && !self.streams[i].send_open
        {
            let s = self.streams.swap_remove(i);
            self.release(s.body.len());
            self.closed(id);
            self.close_if_done();
        }
    }

    /// `n` bytes received on the connection were taken or thrown away: credited to
    /// the peer once half the connection window is.
    fn release(&mut self, n: usize) {
        if n == 0 || self.state == State::Closed {
            return;
        }
        self.recv_uncredited += n as i64;
        let full = self.s.connection_window.max(65_535) as i64;
        if self.recv_uncredited >= full / 2 {
            frame::write_window_update(&mut self.out, 0, self.recv_uncredited as u32);
            self.recv_window += self.recv_uncredited;
            self.recv_uncredited = 0;
        }
    }

    /// `n` bytes of stream `id`'s body were taken or thrown away: credited to the
    /// peer (once half the stream window is, while the answer is still to come),
    /// and to the connection.
    fn release_stream(&mut self, id: u32, n: usize) {
        if let Some(s) = self.stream(id) {
            s.uncredited += n as i64;
            if s.recv_open && s.send_open && s.uncredited >= s.window / 2 {
                let inc = s.uncredited;
                s.recv_window += inc;
                s.uncredited = 0;
                frame::write_window_update(&mut self.out, id, inc as u32);
            }
        }
        self.release(n);
    }

    /// Remembers stream `id` as closed (the last 64).
    fn closed(&mut self, id: u32) {
        self.recently_closed.push_back(id);
        if self.recently_closed.len() > 64 {
            self.recently_closed.pop_front();
        }
    }

    fn spend_reset(&mut self) {
        self.reset_tokens = self.reset_tokens.saturating_sub(1);
        if self.reset_tokens == 0 {
            self.fail(Code::EnhanceYourCalm);
        }
    }

    fn spend_control(&mut self) {
        self.control_tokens = self.control_tokens.saturating_sub(1);
        if self.control_tokens == 0 {
            self.fail(Code::EnhanceYourCalm);
        }
    }

    /// We reset stream `id` (a stream error, or the caller's [`Conn::reset`]):
    /// RST_STREAM, the stream forgotten, the caller told, the budget charged
    /// (CVE-2025-8671: resets a peer provokes count like the ones it sends).
    fn reset_stream(&mut self, id: u32, code: Code) {
        frame::write_rst(&mut self.out, id, code);
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            let s = self.streams.swap_remove(i);
            self.release(s.body.len());
            self.events.push_back(Event::Reset { stream: id });
        }
        self.events.retain(|e| {
            !matches!(e, Event::Request { stream, .. } | Event::TooLarge { stream } | Event::Data { stream } if *stream == id)
        });
        self.recently_reset.push_back(id);
        if self.recently_reset.len() > 64 {
            self.recently_reset.pop_front();
        }
        self.closed(id);
        self.spend_reset();
        self.close_if_done();
    }

    fn frame(&mut self, h: Header, payload: &[u8]) {
        let f = match Frame::parse(h, payload) {
            Ok(f) => f,
            Err(FrameError { stream: 0, code }) => return self.fail(code),
            Err(FrameError { stream, code }) => return self.reset_stream(stream, code),
        };
        if self.state == State::FirstSettings {
            if !matches!(f, Frame::Settings { ack: false, .. }) {
                return self.fail(Code::Protocol);
            }
            self.state = State::Open;
        }
        if let Some(p) = &self.partial
            && !matches!(f, Frame::Continuation { stream, .. } if stream == p.stream)
        {
            return self.fail(Code::Protocol);
        }
        match f {
            Frame::Data {
                stream,
                data,
                flow_len,
                end_stream,
            } => self.on_data(stream, data, flow_len, end_stream),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
                depends_on,
            } => {
                if depends_on == Some(stream) {
                    return self.reset_stream(stream, Code::Protocol);
                }
                self.on_headers(stream, block, end_stream, end_headers)
            }
            Frame::Continuation {
                stream: _,
                block,
                end_headers,
            } => self.on_continuation(block, end_headers),
            Frame::Priority { stream, depends_on } => {
                self.spend_control();
                if depends_on == stream {
                    self.reset_stream(stream, Code::Protocol);
                }
            }
            Frame::RstStream { stream, .. } => self.on_rst(stream),
            Frame::Settings { ack, entries } => {
                if !ack {
                    self.spend_control();
                    self.on_settings(entries);
                }
            }
            Frame::PushPromise { .. } => self.fail(Code::Protocol),
            Frame::Ping { ack, data } => {
                if !ack {
                    self.spend_control();
                    frame::write_frame(&mut self.out, kind::PING, flag::ACK, 0, &data);
                }
            }
            // The peer opens no more streams; the connection still serves its
            // open ones and its control frames until it closes (or goes idle).
            Frame::GoAway { .. } => {}
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment),
            Frame::PriorityUpdate { prioritized, field } => {
                // Counted as a control frame: a flood of them ends the connection.
                self.spend_control();
                if self.state != State::Closed {
                    self.on_priority_update(prioritized, field);
                }
            }
            Frame::Unknown { .. } => self.spend_control(),
        }
    }

    /// PRIORITY_UPDATE for stream `id` (RFC 9218 §7.1): an open stream takes it
    /// now; one not open yet when it opens (its `priority` field then does not
    /// count); a closed one ignores it. Stream 0, a stream we would open (even),
    /// or more streams prioritized before they open than may be open at once
    /// (with the open ones) is a PROTOCOL_ERROR.
    fn on_priority_update(&mut self, id: u32, field: &[u8]) {
        if id == 0 || id.is_multiple_of(2) {
            return self.fail(Code::Protocol);
        }
        let p = Priority::parse(field);
        if let Some(s) = self.stream(id) {
            s.priority = Some(p);
            return;
        }
        let partial = self.partial.as_ref().map(|p| p.stream);
        if id <= self.last_peer_stream || partial == Some(id) {
            // Closed (or its head still coming: it opens with what it asks).
            return;
        }
        if let Some(e) = self.early_priorities.iter_mut().find(|e| e.0 == id) {
            e.1 = p;
            return;
        }
        if self.early_priorities.len() + self.streams.len()
            >= self.s.max_concurrent_streams as usize
        {
            return self.fail(Code::Protocol);
        }
        self.early_priorities.push((id, p));
    }

    fn on_data(&mut self, id: u32, data: &[u8], flow_len: u32, end: bool) {
        self.recv_window -= flow_len as i64;
        if self.recv_window < 0 {
            return self.fail(Code::FlowControl);
        }
        if flow_len == 0 && !end {
            self.spend_control();
        }
        let len = data.len();
        let Some(s) = self.stream(id) else {
            // The connection window is credited whatever becomes of the stream.
            self.release(flow_len as usize);
            if id > self.last_peer_stream {
                return self.fail(Code::Protocol);
            }
            if !self.recently_reset.contains(&id) {
                self.reset_stream(id, Code::StreamClosed);
            }
            return;
        };
        if !s.recv_open {
            self.release(flow_len as usize);
            return self.reset_stream(id, Code::StreamClosed);
        }
        s.recv_window -= flow_len as i64;
        s.recv_len += len as u64;
        if s.recv_window < 0 {
            self.release(flow_len as usize);
            return self.reset_stream(id, Code::FlowControl);
        }
        if s.expect_len
            .is_some_and(|n| s.recv_len > n || end && s.recv_len != n)
        {
            self.release(flow_len as usize);
            return self.reset_stream(id, Code::Protocol);
        }
        // Padding is thrown away at once; the payload is held for the caller,
        // unless it said it does not want it.
        let (keep, discard) = if s.discard {
            (0, flow_len as usize)
        } else {
            (len, flow_len as usize - len)
        };
        s.body.extend_from_slice(&data[..keep]);
        if end {
            s.recv_open = false;
        }
        if !s.discard && (keep > 0 || end) && !self.events.contains(&Event::Data { stream: id }) {
            self.events.push_back(Event::Data { stream: id });
        }
        self.release_stream(id, discard);
        if end {
            self.remove_if_done(id);
        } else if let Some(s) = self.stream(id)
            && !s.send_open
            && s.recv_window <= 0
        {
            // Answered, and the body goes on past the window it had: stop it.
            self.reset_stream(id, Code::NoError);
        }
    }

    /// Body bytes of stream `id` received and not yet taken, and whether the body
    /// ends with them (END_STREAM came). `None` when the stream is gone.
    pub fn body(&self, id: u32) -> Option<(&[u8], bool)> {
        let s = self.streams.iter().find(|s| s.id == id)?;
        Some((&s.body, !s.recv_open))
    }

    /// The caller took the first `n` bytes of [`Conn::body`]: they are dropped and
    /// both windows credited for them.
    pub fn consume(&mut self, id: u32, n: usize) {
        let Some(s) = self.stream(id) else {
            return;
        };
        let n = n.min(s.body.len());
        s.body.drain(..n);
        self.release_stream(id, n);
    }

    /// The caller takes stream `id`'s body (an upload it accepted): its window
    /// grows to [`Settings::body_window`].
    pub fn accept_body(&mut self, id: u32) {
        let want = self.s.body_window as i64;
        let Some(s) = self.stream(id) else {
            return;
        };
        if !s.recv_open || s.window >= want {
            return;
        }
        let inc = want - s.window;
        s.window = want;
        s.recv_window += inc;
        frame::write_window_update(&mut self.out, id, inc as u32);
    }

    /// The caller stops taking stream `id`'s body (it refused it mid-way: too
    /// large, a full disk, a stall): thrown away as [`Conn::discard_body`] does,
    /// and once the answer ends the stream is reset NO_ERROR if the body still
    /// comes.
    pub fn stop_body(&mut self, id: u32) {
        if let Some(s) = self.stream(id) {
            s.stop = true;
        }
        self.discard_body(id);
    }

    /// The caller does not want stream `id`'s body (its answer does not depend on
    /// it): what is held and what comes is thrown away, the windows credited (the
    /// content-length is still checked). Once the answer ends, the stream is reset
    /// NO_ERROR if the body still comes.
    pub fn discard_body(&mut self, id: u32) {
        let Some(s) = self.stream(id) else {
            return;
        };
        s.discard = true;
        let n = s.body.len();
        s.body.clear();
        self.events.retain(|e| *e != Event::Data { stream: id });
        self.release_stream(id, n);
    }

    fn on_headers(&mut self, id: u32, block: &[u8], end_stream: bool, end_headers: bool) {
        let trailers = match self.stream(id) {
            Some(s) if s.recv_open => {
                if !end_stream {
                    return self.fail(Code::Protocol);
                }
                true
            }
            Some(_) => {
                // Half-closed (remote): decode to keep HPACK in step, then refuse.
                let mut p = Partial {
                    stream: id,
                    block: Vec::new(),
                    end_stream,
                    frames: 0,
                    trailers: true,
                    refused: true,
                };
                if end_headers {
                    return self.decoded(&p, block);
                }
                p.block = block.to_vec();
                self.partial = Some(p);
                return;
            }
            None => {
                // A stream we knew and closed: STREAM_CLOSED; an even or a lower
                // identifier never opened: PROTOCOL_ERROR (RFC 9113 §5.1, §5.1.1).
                if id <= self.last_peer_stream && self.recently_closed.contains(&id) {
                    return self.fail(Code::StreamClosed);
                }
                if id.is_multiple_of(2) || id <= self.last_peer_stream {
                    return self.fail(Code::Protocol);
                }
                false
            }
        };
        if block.len() > self.s.max_header_block {
            return self.fail(Code::EnhanceYourCalm);
        }
        let mut p = Partial {
            stream: id,
            block: Vec::new(),
            end_stream,
            frames: 0,
            trailers,
            refused: false,
        };
        if end_headers {
            // Whole in this frame: decoded where it lies.
            return self.decoded(&p, block);
        }
        p.block = block.to_vec();
        self.partial = Some(p);
    }

    fn on_continuation(&mut self, block: &[u8], end_headers: bool) {
        let Some(p) = &mut self.partial else {
            return self.fail(Code::Protocol);
        };
        p.frames += 1;
        if p.frames > self.s.max_continuations
            || p.block.len() + block.len() > self.s.max_header_block
        {
            // CONTINUATION flood: the block is never decoded, the connection ends.
            return self.fail(Code::EnhanceYourCalm);
        }
        p.block.extend_from_slice(block);
        if end_headers {
            self.end_block();
        }
    }

    /// A header block received in pieces is whole.
    fn end_block(&mut self) {
        let Some(mut p) = self.partial.take() else {
            return;
        };
        let block = std::mem::take(&mut p.block);
        self.decoded(&p, &block);
    }

    /// A whole header block: decoded (always, to keep the table in step), then a
    /// request, trailers to drop, or a refusal.
    fn decoded(&mut self, p: &Partial, block: &[u8]) {
        let mut head = (!p.refused && !p.trailers)
            .then(|| Builder::reuse(self.spare.pop().unwrap_or_default(), p.end_stream));
        let mut pseudo = false;
        let too_large = match self.decoder.decode_with(block, |n, v| match &mut head {
            Some(b) => b.field(n, v),
            None => pseudo |= n.starts_with(b":"),
        }) {
            Ok(t) => t,
            Err(_) => return self.fail(Code::Compression),
        };
        let id = p.stream;
        if p.refused {
            return self.reset_stream(id, Code::StreamClosed);
        }
        if p.trailers {
            // Trailers carry no pseudo-field (RFC 9113 §8.1).
            if pseudo && !too_large {
                return self.reset_stream(id, Code::Protocol);
            }
            if let Some(s) = self.stream(id)
                && s.recv_open
            {
                s.recv_open = false;
                if s.expect_len.is_some_and(|n| s.recv_len != n) {
                    return self.reset_stream(id, Code::Protocol);
                }
                if !s.discard && !self.events.contains(&Event::Data { stream: id }) {
                    self.events.push_back(Event::Data { stream: id });
                }
                self.remove_if_done(id);
            }
            return;
        }
        self.last_peer_stream = id;
        // A PRIORITY_UPDATE that came first is the later word (RFC 9218 §7.1).
        let early = self
            .early_priorities
            .iter()
            .position(|e| e.0 == id)
            .map(|i| self.early_priorities.swap_remove(i).1);
        // Streams skipped over (lower ids never opened) can't open any more.
        self.early_priorities.retain(|e| e.0 > id);
        if self.goaway_sent {
            // Streams after our GOAWAY are ignored (RFC 9113 §6.8).
            return;
        }
        if self.streams.len() >= self.s.max_concurrent_streams as usize {
            return self.reset_stream(id, Code::RefusedStream);
        }
        let mut s = Stream {
            id,
            recv_open: !p.end_stream,
            send_open: true,
            sending_body: false,
            send_window: self.peer_initial_window,
            recv_window: self.s.initial_window as i64,
            expect_len: None,
            recv_len: 0,
            body: Vec::new(),
            discard: false,
            stop: false,
            uncredited: 0,
            window: self.s.initial_window as i64,
            priority: early,
        };
        if too_large {
            self.streams.push(s);
            self.events.push_back(Event::TooLarge { stream: id });
            return;
        }
        match head.map(Builder::finish).expect("a request's block") {
            Ok(head) => {
                s.expect_len = head.content_length;
                s.priority = early.or_else(|| head.priority());
                self.streams.push(s);
                self.events.push_back(Event::Request { stream: id, head });
            }
            Err(_) => self.reset_stream(id, Code::Protocol),
        }
    }

    fn on_rst(&mut self, id: u32) {
        if id > self.last_peer_stream && self.partial.is_none() {
            // An idle stream.
            return self.fail(Code::Protocol);
        }
        // Rapid reset (CVE-2023-44487): every reset of a live stream is charged.
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            let s = self.streams.swap_remove(i);
            self.release(s.body.len());
            self.closed(id);
            self.events.retain(|e| {
                !matches!(e, Event::Request { stream, .. } | Event::TooLarge { stream } | Event::Data { stream } if *stream == id)
            });
            self.events.push_back(Event::Reset { stream: id });
            self.spend_reset();
            self.close_if_done();
        }
    }

    fn on_settings(&mut self, entries: &[u8]) {
        for e in entries.chunks_exact(6) {
            let id = u16::from_be_bytes([e[0], e[1]]);
            let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
            match id {
                setting::ENABLE_PUSH if v > 1 => return self.fail(Code::Protocol),
                setting::HEADER_TABLE_SIZE => self.encoder.set_limit(v),
                setting::INITIAL_WINDOW_SIZE => {
                    if v as i64 > MAX_WINDOW {
                        return self.fail(Code::FlowControl);
                    }
                    let delta = v as i64 - self.peer_initial_window;
                    self.peer_initial_window = v as i64;
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return self.fail(Code::FlowControl);
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&v) {
                        return self.fail(Code::Protocol);
                    }
                    self.peer_max_frame = v;
                }
                _ => {}
            }
        }
        frame::write_frame(&mut self.out, kind::SETTINGS, flag::ACK, 0, &[]);
    }

    fn on_window_update(&mut self, id: u32, inc: u32) {
        let anything_to_send = self.streams.iter().any(|s| s.sending_body);
        if !anything_to_send {
            self.spend_control();
            if self.state == State::Closed {
                return;
            }
        }
        if id == 0 {
            if inc == 0 {
                return self.fail(Code::Protocol);
            }
            self.send_window += inc as i64;
            if self.send_window > MAX_WINDOW {
                self.fail(Code::FlowControl);
            }
            return;
        }
        let Some(s) = self.stream(id) else {
            if id > self.last_peer_stream && self.partial.is_none() {
                return self.fail(Code::Protocol);
            }
            return;
        };
        if inc == 0 {
            return self.reset_stream(id, Code::Protocol);
        }
        s.send_window += inc as i64;
        if s.send_window > MAX_WINDOW {
            self.reset_stream(id, Code::FlowControl);
        }
    }

    /// Answers stream `id` with `status` and `fields` (lower-case names, no
    /// connection-specific ones); `end_stream`: no body follows. False when the
    /// stream is gone (reset meanwhile).
    pub fn send_headers(
        &mut self,
        id: u32,
        status: u16,
        fields: &[(&str, &str)],
        end_stream: bool,
    ) -> bool {
        self.send_block(id, end_stream, |e, b| {
            e.begin(b);
            hpack::encode_response(b, status, fields)
        })
    }

    /// As [`Conn::send_headers`], for a protocol-neutral head (the site's): its
    /// status, Date, Server and fields, encoded straight from it (the fields
    /// responses repeat through the connection's dynamic table).
    pub fn send_head(&mut self, id: u32, head: &ResponseHead, end_stream: bool) -> bool {
        self.send_block(id, end_stream, |e, b| e.head(b, head))
    }

    /// A HEADERS block made by `encode`, on stream `id`.
    fn send_block(
        &mut self,
        id: u32,
        end_stream: bool,
        encode: impl FnOnce(&mut Encoder, &mut Vec<u8>),
    ) -> bool {
        if self.state == State::Closed {
            return false;
        }
        let Some(s) = self.stream(id) else {
            return false;
        };
        if !s.send_open || s.sending_body {
            return false;
        }
        s.sending_body = !end_stream;
        if end_stream {
            s.send_open = false;
        }
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        encode(&mut self.encoder, &mut block);
        frame::write_headers(
            &mut self.out,
            id,
            &block,
            end_stream,
            self.peer_max_frame as usize,
        );
        self.scratch = block;
        self.refill_control();
        if end_stream {
            self.finished(id);
        }
        true
    }

    fn refill_control(&mut self) {
        self.control_tokens = (self.control_tokens + 1).min(self.s.control_budget);
    }

    /// A response ended whole: one reset more may be spent.
    fn finished(&mut self, id: u32) {
        self.reset_tokens = (self.reset_tokens + 1).min(self.s.reset_budget);
        // A request body still coming is not wanted any more. What the stream's
        // window still lets the peer send is received and thrown away (a client
        // that had its body on the way gets to finish it: curl 7.88 fails a stream
        // reset before its upload ends); past that window, or a content-length
        // beyond it, the peer is asked to stop: RST_STREAM NO_ERROR after a
        // complete response (RFC 9113 §8.1). Frames it had in flight are dropped,
        // the connection window credited for them.
        if let Some(s) = self.stream(id)
            && s.recv_open
        {
            let window = s.recv_window.max(0) as u64;
            let left = s.expect_len.map(|n| n.saturating_sub(s.recv_len));
            if s.stop || window == 0 || left.is_some_and(|l| l > window) {
                return self.reset_stream(id, Code::NoError);
            }
            s.discard = true;
            let held = std::mem::take(&mut s.body).len();
            self.events.retain(|e| *e != Event::Data { stream: id });
            self.release(held);
        }
        self.remove_if_done(id);
    }

    /// An interim `100 Continue` on stream `id` (its request asked with `expect:
    /// 100-continue` and the body is taken): a HEADERS frame without END_STREAM
    /// before the final answer; nothing else changes. False when the stream is
    /// gone, answered, or its body already ended.
    pub fn send_continue(&mut self, id: u32) -> bool {
        if self.state == State::Closed {
            return false;
        }
        let Some(s) = self.stream(id) else {
            return false;
        };
        if !s.send_open || s.sending_body || !s.recv_open {
            return false;
        }
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        self.encoder.begin(&mut block);
        hpack::encode_response(&mut block, 100, &[]);
        frame::write_headers(
            &mut self.out,
            id,
            &block,
            false,
            self.peer_max_frame as usize,
        );
        self.scratch = block;
        true
    }

    /// Body bytes stream `id` may send now, in one frame: the smaller of both
    /// windows and the peer's frame size (0 when the stream is gone).
    pub fn capacity(&self, id: u32) -> usize {
        let Some(s) = self.streams.iter().find(|s| s.id == id) else {
            return 0;
        };
        if !s.sending_body || self.state == State::Closed {
            return 0;
        }
        s.send_window
            .min(self.send_window)
            .min(self.peer_max_frame as i64)
            .max(0) as usize
    }

    /// One DATA frame of at most `len` bytes (at most [`Conn::capacity`]) on
    /// stream `id`: `fill` writes the payload into the slice it is given and says
    /// how many bytes it wrote; `end`: the body ends with these bytes, if `fill`
    /// wrote all `len` and the window let them all go. Returns the bytes sent.
    pub fn send_data(
        &mut self,
        id: u32,
        len: usize,
        end: bool,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        let asked = len;
        let len = len.min(self.capacity(id));
        if len == 0 && !(end && self.stream(id).is_some_and(|s| s.sending_body)) {
            return 0;
        }
        let at = self.out.len();
        self.out.resize(at + HEADER_LEN + len, 0);
        let n = fill(&mut self.out[at + HEADER_LEN..]).min(len);
        self.out.truncate(at + HEADER_LEN + n);
        // The stream ends only with every byte the caller asked to send: not when
        // its source gave less, nor when the window cut the frame short.
        self.frame_sent(id, at, n, end && n == asked)
    }

    /// As [`Conn::send_data`], the payload from `bytes` (as much as the
    /// windows let go; `end`: the body ends with these bytes, if they all go).
    pub fn send_data_from(&mut self, id: u32, bytes: &[u8], end: bool) -> usize {
        let len = bytes.len().min(self.capacity(id));
        if len == 0 && !(end && self.stream(id).is_some_and(|s| s.sending_body)) {
            return 0;
        }
        let at = self.out.len();
        self.out.extend_from_slice(&[0; HEADER_LEN]);
        self.out.extend_from_slice(&bytes[..len]);
        self.frame_sent(id, at, len, end && len == bytes.len())
    }

    /// A DATA frame of `n` bytes was put at `at` of the output, its header still
    /// to write: written, the windows charged, the stream ended if `end`.
    fn frame_sent(&mut self, id: u32, at: usize, n: usize, end: bool) -> usize {
        let h = Header {
            len: n as u32,
            kind: kind::DATA,
            flags: if end { flag::END_STREAM } else { 0 },
            stream: id,
        };
        self.out[at..at + HEADER_LEN].copy_from_slice(&h.bytes());
        self.data_sent(id, n, end);
        n
    }

    /// One DATA frame of at most `len` bytes (at most [`Conn::capacity`]) on
    /// stream `id` whose payload the caller sends itself (from a file mapping, by
    /// `sendfile`): only the 9-byte header goes into `out`. Returns the payload
    /// length `n` the header announces and where in `out` the payload belongs,
    /// `at`: exactly `n` bytes must go on the wire after `out[..at]` and before
    /// `out[at..]` (frames this call or later ones append: a reset of the stream's
    /// request body, a window update). A caller that can't deliver them must
    /// close the connection: the frame can't be ended otherwise. `end`: the body
    /// ends with these bytes, if the window let them all go.
    pub fn send_data_header(&mut self, id: u32, len: usize, end: bool) -> (usize, usize) {
        let asked = len;
        let n = len.min(self.capacity(id));
        if n == 0 && !(end && self.stream(id).is_some_and(|s| s.sending_body)) {
            return (0, self.out.len());
        }
        let end = end && n == asked;
        let h = Header {
            len: n as u32,
            kind: kind::DATA,
            flags: if end { flag::END_STREAM } else { 0 },
            stream: id,
        };
        self.out.extend_from_slice(&h.bytes());
        let at = self.out.len();
        self.data_sent(id, n, end);
        (n, at)
    }

    /// Windows and stream state after a DATA frame of `n` bytes.
    fn data_sent(&mut self, id: u32, n: usize, end: bool) {
        self.send_window -= n as i64;
        self.refill_control();
        if let Some(s) = self.stream(id) {
            s.send_window -= n as i64;
            if end {
                s.sending_body = false;
                s.send_open = false;
            }
        }
        if end {
            self.finished(id);
        }
    }

    /// The caller is done with a request's head: its buffers serve a next
    /// request (no allocation per request for its text and field list).
    pub fn recycle(&mut self, head: Head) {
        if self.spare.len() < SPARE_HEADS && head.spare() {
            self.spare.push(head);
        }
    }

    /// The caller gives up on stream `id` (its file shrank, the stream's body
    /// can't be sent): RST_STREAM INTERNAL_ERROR, counted like every reset.
    pub fn reset(&mut self, id: u32) {
        if self.stream(id).is_some() {
            self.reset_stream(id, Code::Internal);
        }
    }

    /// The caller gives up on the connection (a timeout: the peer never opened its
    /// window, or stopped reading): GOAWAY with `code`.
    pub fn abort(&mut self, code: Code) {
        self.fail(code);
    }
}

#[cfg(test)]
mod tests;
