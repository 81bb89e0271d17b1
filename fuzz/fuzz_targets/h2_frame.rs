//! The frame decoder on arbitrary bytes, at a max frame size chosen by the
//! input: it never panics, never reads past a frame, never takes a frame
//! above the max; every frame a server could send is re-encoded and must
//! decode to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::h2::frame::{self, Frame, FrameError};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut buf)) = data.split_first() else {
        return;
    };
    let max = match sel % 4 {
        0 => frame::MIN_MAX_FRAME_SIZE,
        1 => frame::MAX_MAX_FRAME_SIZE,
        2 => u32::from(sel),
        _ => frame::MIN_MAX_FRAME_SIZE + u32::from(sel) * 977,
    };
    loop {
        match frame::decode(buf, max) {
            Ok(None) => break,
            Ok(Some((f, n))) => {
                assert!(n >= frame::HEADER_LEN && n <= buf.len());
                assert!(n - frame::HEADER_LEN <= max as usize);
                reencode(f);
                buf = &buf[n..];
            }
            Err(FrameError::Stream { .. }) => {
                let n = frame::frame_len(buf).expect("a stream error has a whole frame");
                assert!(n <= buf.len());
                buf = &buf[n..];
            }
            Err(FrameError::Connection { .. }) => break,
        }
    }
});

fn reencode(f: Frame<'_>) {
    let mut out = Vec::new();
    match f {
        Frame::Data {
            stream,
            end_stream,
            data,
            ..
        } => frame::write_data(&mut out, stream, data, end_stream),
        Frame::Headers {
            stream,
            end_stream,
            block,
            ..
        } => {
            frame::write_headers(
                &mut out,
                stream,
                block,
                end_stream,
                frame::MIN_MAX_FRAME_SIZE,
            );
            let mut joined = Vec::new();
            let mut rest = &out[..];
            while let Some((g, n)) = frame::decode(rest, frame::MIN_MAX_FRAME_SIZE).unwrap() {
                match g {
                    Frame::Headers {
                        block,
                        end_stream: e,
                        stream: s,
                        ..
                    } => {
                        assert_eq!((s, e), (stream, end_stream));
                        joined.extend_from_slice(block);
                    }
                    Frame::Continuation {
                        block, stream: s, ..
                    } => {
                        assert_eq!(s, stream);
                        joined.extend_from_slice(block);
                    }
                    g => panic!("{g:?}"),
                }
                rest = &rest[n..];
            }
            assert!(rest.is_empty());
            assert_eq!(joined, block);
            return;
        }
        Frame::RstStream { stream, code } => frame::write_rst_stream(&mut out, stream, code),
        Frame::Settings { ack: true, .. } => frame::write_settings_ack(&mut out),
        Frame::Settings { ack: false, params } => {
            frame::write_settings(&mut out, &params.iter().collect::<Vec<_>>())
        }
        Frame::Ping { ack, data } => frame::write_ping(&mut out, ack, data),
        Frame::GoAway {
            last_stream,
            code,
            debug,
        } => frame::write_goaway(&mut out, last_stream, code, debug),
        Frame::WindowUpdate { stream, increment } => {
            frame::write_window_update(&mut out, stream, increment)
        }
        _ => return,
    }
    let (g, n) = frame::decode(&out, frame::MAX_MAX_FRAME_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(n, out.len());
    match (f, g) {
        (
            Frame::Data {
                stream,
                end_stream,
                data,
                ..
            },
            Frame::Data {
                stream: s,
                end_stream: e,
                data: d,
                flow_len,
            },
        ) => {
            assert_eq!((stream, end_stream, data), (s, e, d));
            assert_eq!(flow_len as usize, data.len());
        }
        (f, g) => assert_eq!(f, g),
    }
}
