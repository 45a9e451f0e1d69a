//! What the connection does with each frame the client sends (RFC 9113 §6), and with each
//! new stream's header block.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Driver, Fatal, MAX_BLOCK, streams::Stream, tagged};
use crate::{
    h2::{
        Started,
        frame::{self, Head, Reason, flag, kind, setting},
        recv,
        request::Problem,
    },
    limits::MAX_CONCURRENT_STREAMS,
};

type Handled = Result<(), Fatal>;

fn protocol(why: &'static str) -> Fatal {
    Fatal::Error(Reason::Protocol, why)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(super) fn handle_frame(&mut self, head: Head, payload: &[u8]) -> Handled {
        if !self.settings_seen {
            if head.kind != kind::SETTINGS || head.has(flag::ACK) {
                return Err(protocol("the first frame is not SETTINGS"));
            }
            self.settings_seen = true;
        }
        if let Some((stream, ..)) = &self.continuation
            && (head.kind != kind::CONTINUATION || head.stream != *stream)
        {
            return Err(protocol("a header block interrupted"));
        }
        match head.kind {
            kind::DATA => self.on_data(head, payload),
            kind::HEADERS => self.on_headers(head, payload),
            kind::CONTINUATION => self.on_continuation(head, payload),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(protocol("PRIORITY on stream 0"));
                }
                if head.len != 5 {
                    self.reset(head.stream, Reason::FrameSize);
                }
                Ok(())
            }
            kind::RST_STREAM => self.on_rst_stream(head, payload),
            kind::SETTINGS => self.on_settings(head, payload),
            kind::PUSH_PROMISE => Err(protocol("PUSH_PROMISE from a client")),
            kind::PING => {
                if head.stream != 0 {
                    return Err(protocol("PING on a stream"));
                }
                if head.len != 8 {
                    return Err(Fatal::Error(Reason::FrameSize, "PING not 8 bytes"));
                }
                if !head.has(flag::ACK) {
                    let frame_payload = payload;
                    let mut payload = [0u8; 8];
                    payload.copy_from_slice(frame_payload);
                    frame::ping(&mut self.out, flag::ACK, &payload);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(protocol("GOAWAY on a stream"));
                }
                self.peer_gone = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.on_window_update(head, payload),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn on_data(&mut self, head: Head, payload: &[u8]) -> Handled {
        if head.stream == 0 {
            return Err(protocol("DATA on stream 0"));
        }
        let len = head.len as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(Fatal::Error(
                Reason::FlowControl,
                "DATA past the connection window",
            ));
        }
        let Some(range) = frame::unpad(&head, payload) else {
            return Err(protocol("padding longer than the frame"));
        };
        let data = &payload[range];
        let end_stream = head.has(flag::END_STREAM);
        if data.is_empty() && !end_stream {
            self.empty_budget -= 1;
            if self.empty_budget < 0 {
                return Err(Fatal::Error(Reason::EnhanceYourCalm, "empty DATA frames"));
            }
        }
        let Some(stream) = self.streams.get_mut(head.stream) else {
            if head.stream > self.last_stream {
                return Err(protocol("DATA on an idle stream"));
            }
            // A stream we closed or reset: its window is the connection's to give back.
            self.recv_credit += len;
            return Ok(());
        };
        if stream.ended {
            self.recv_credit += len;
            self.reset(head.stream, Reason::StreamClosed);
            return Ok(());
        }
        stream.recv_window -= len;
        if stream.recv_window < 0 {
            self.recv_credit += len;
            self.reset(head.stream, Reason::FlowControl);
            return Ok(());
        }
        stream.received += data.len() as u64;
        let over = stream
            .content_length
            .is_some_and(|n| stream.received > n || (end_stream && stream.received != n));
        if over {
            self.recv_credit += len;
            self.reset(head.stream, Reason::Protocol);
            return Ok(());
        }
        // Padding is given back at once; the data once the exchange takes it.
        self.recv_credit += len - data.len() as i64;
        if let Some(body) = &stream.body {
            if !data.is_empty() {
                body.push(Bytes::copy_from_slice(data));
            }
            if end_stream {
                body.end();
            }
        } else {
            self.recv_credit += data.len() as i64;
        }
        stream.ended |= end_stream;
        Ok(())
    }

    fn on_headers(&mut self, head: Head, payload: &[u8]) -> Handled {
        if head.stream == 0 {
            return Err(protocol("HEADERS on stream 0"));
        }
        let Some(mut range) = frame::unpad(&head, payload) else {
            return Err(protocol("padding longer than the frame"));
        };
        if head.has(flag::PRIORITY) {
            if range.len() < 5 {
                return Err(Fatal::Error(
                    Reason::FrameSize,
                    "HEADERS too short for its priority",
                ));
            }
            let depends = frame::u31(&payload[range.start..]);
            if depends == head.stream {
                return Err(protocol("a stream depending on itself"));
            }
            range.start += 5;
        }
        let block = &payload[range];
        let end_stream = head.has(flag::END_STREAM);
        if head.has(flag::END_HEADERS) {
            return self.on_block(head.stream, end_stream, block);
        }
        if block.len() > MAX_BLOCK {
            return Err(Fatal::Error(
                Reason::EnhanceYourCalm,
                "header block too large",
            ));
        }
        self.continuation = Some((head.stream, end_stream, block.to_vec()));
        Ok(())
    }

    fn on_continuation(&mut self, head: Head, payload: &[u8]) -> Handled {
        let Some((stream, end_stream, mut block)) = self.continuation.take() else {
            return Err(protocol("CONTINUATION without HEADERS"));
        };
        if block.len() + head.len > MAX_BLOCK {
            return Err(Fatal::Error(
                Reason::EnhanceYourCalm,
                "header block too large",
            ));
        }
        if head.len == 0 && !head.has(flag::END_HEADERS) {
            self.empty_budget -= 1;
            if self.empty_budget < 0 {
                return Err(Fatal::Error(
                    Reason::EnhanceYourCalm,
                    "empty CONTINUATION frames",
                ));
            }
        }
        block.extend_from_slice(payload);
        if head.has(flag::END_HEADERS) {
            return self.on_block(stream, end_stream, &block);
        }
        self.continuation = Some((stream, end_stream, block));
        Ok(())
    }

    /// A complete header block: a new stream's request, or trailers.
    fn on_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Handled {
        let compression =
            |_| Fatal::Error(Reason::Compression, "a header block that does not decode");
        if let Some(stream) = self.streams.get_mut(id) {
            // Trailers: decoded to keep the table in step, and not passed on.
            self.decoder.decode(block, |_, _| {}).map_err(compression)?;
            if stream.ended || !end_stream {
                self.reset(id, Reason::Protocol);
                return Ok(());
            }
            stream.ended = true;
            if stream.content_length.is_some_and(|n| n != stream.received) {
                self.reset(id, Reason::Protocol);
                return Ok(());
            }
            if let Some(body) = &stream.body {
                body.end();
            }
            return Ok(());
        }
        if id.is_multiple_of(2) {
            return Err(protocol("a client stream with an even id"));
        }
        if id <= self.last_stream {
            // A stream already closed (trailers after our reset, say).
            self.decoder.decode(block, |_, _| {}).map_err(compression)?;
            return Ok(());
        }
        self.last_stream = id;
        self.fields.clear();
        let fields = &mut self.fields;
        self.decoder
            .decode(block, |name, value| fields.add(name, value))
            .map_err(compression)?;
        if self.goaway.is_some() || self.closing {
            return Ok(());
        }
        if self.streams.len() >= MAX_CONCURRENT_STREAMS as usize {
            frame::rst_stream(&mut self.out, id, Reason::RefusedStream);
            return Ok(());
        }
        let too_large = match self.fields.complete() {
            Some(Problem::Malformed(why)) => {
                tracing::debug!(stream = id, why, "malformed HTTP/2 request");
                frame::rst_stream(&mut self.out, id, Reason::Protocol);
                return Ok(());
            }
            Some(Problem::TooLarge) => true,
            None => false,
        };
        let content_length = self.fields.content_length;
        if end_stream && content_length.is_some_and(|n| n != 0) {
            frame::rst_stream(&mut self.out, id, Reason::Protocol);
            return Ok(());
        }
        let (sender, body) = if end_stream {
            (None, None)
        } else {
            let (sender, body) = recv::channel();
            (Some(sender), Some(body))
        };
        let started = super::super::start(&self.conn, &mut self.fields, body, too_large);
        let mut stream = Stream::new(sender, content_length, self.peer_initial_window);
        match started {
            Started::Reply(reply) => {
                self.streams.insert(id, stream);
                self.respond(id, reply);
            }
            Started::Exchange(exchange) => {
                let (fut, abort) = tagged(id, exchange);
                stream.set_abort(abort);
                self.streams.insert(id, stream);
                self.running.push(fut);
            }
        }
        Ok(())
    }

    fn on_rst_stream(&mut self, head: Head, _payload: &[u8]) -> Handled {
        if head.stream == 0 {
            return Err(protocol("RST_STREAM on stream 0"));
        }
        if head.len != 4 {
            return Err(Fatal::Error(Reason::FrameSize, "RST_STREAM not 4 bytes"));
        }
        if head.stream > self.last_stream {
            return Err(protocol("RST_STREAM on an idle stream"));
        }
        if self.forget(head.stream) {
            self.reset_budget -= 1;
            if self.reset_budget < 0 {
                return Err(Fatal::Error(
                    Reason::EnhanceYourCalm,
                    "too many streams reset",
                ));
            }
        }
        Ok(())
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Handled {
        if head.stream != 0 {
            return Err(protocol("SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if head.len != 0 {
                return Err(Fatal::Error(
                    Reason::FrameSize,
                    "SETTINGS ACK with a payload",
                ));
            }
            return Ok(());
        }
        if !head.len.is_multiple_of(6) {
            return Err(Fatal::Error(
                Reason::FrameSize,
                "SETTINGS not in 6-byte entries",
            ));
        }
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::ENABLE_PUSH if value > 1 => {
                    return Err(protocol("SETTINGS_ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(Fatal::Error(
                            Reason::FlowControl,
                            "initial window too large",
                        ));
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    if !self.streams.shift_send_windows(delta) {
                        return Err(Fatal::Error(Reason::FlowControl, "a window past 2^31-1"));
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(protocol("SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                // Our encoder uses no dynamic table, and we never push.
                _ => {}
            }
        }
        frame::settings_ack(&mut self.out);
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Handled {
        if head.len != 4 {
            return Err(Fatal::Error(Reason::FrameSize, "WINDOW_UPDATE not 4 bytes"));
        }
        let increment = i64::from(frame::u31(payload));
        if head.stream == 0 {
            if increment == 0 {
                return Err(protocol("a zero window increment"));
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return Err(Fatal::Error(
                    Reason::FlowControl,
                    "connection window past 2^31-1",
                ));
            }
            return Ok(());
        }
        if head.stream > self.last_stream {
            return Err(protocol("WINDOW_UPDATE on an idle stream"));
        }
        let Some(stream) = self.streams.get_mut(head.stream) else {
            return Ok(());
        };
        if increment == 0 {
            self.reset(head.stream, Reason::Protocol);
            return Ok(());
        }
        stream.send_window += increment;
        if stream.send_window > frame::MAX_WINDOW {
            self.reset(head.stream, Reason::FlowControl);
        }
        Ok(())
    }
}
