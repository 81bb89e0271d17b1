//! The frame layer fed hand-made bytes: every length and field rule of
//! RFC 9113 §6, each named by its section, and the encoders read back.

use super::ErrorCode::*;
use super::*;

/// A frame from its parts, for hand-made (often invalid) inputs.
fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = header(payload.len(), kind, flags, stream).to_vec();
    v.extend_from_slice(payload);
    v
}

fn one(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    match decode(buf, MIN_MAX_FRAME_SIZE)? {
        Some((f, n)) => {
            assert_eq!(n, buf.len());
            Ok(f)
        }
        None => panic!("incomplete"),
    }
}

fn conn(code: ErrorCode) -> impl Fn(FrameError) -> bool {
    move |e| matches!(e, FrameError::Connection { code: c, .. } if c == code)
}

fn stream(id: u32, code: ErrorCode) -> impl Fn(FrameError) -> bool {
    move |e| matches!(e, FrameError::Stream { stream, code: c, .. } if c == code && stream == id)
}

#[test]
fn every_prefix_of_a_frame_needs_more() {
    let mut buf = Vec::new();
    write_data(&mut buf, 1, b"hello", true);
    for n in 0..buf.len() {
        assert_eq!(
            decode(&buf[..n], MIN_MAX_FRAME_SIZE),
            Ok(None),
            "prefix {n}"
        );
    }
    let f = one(&buf).unwrap();
    assert_eq!(
        f,
        Frame::Data {
            stream: 1,
            end_stream: true,
            data: b"hello",
            flow_len: 5
        }
    );
}

/// §4.2: a frame above our SETTINGS_MAX_FRAME_SIZE is refused from its
/// header alone; one at the limit is accepted.
#[test]
fn frame_size_limit() {
    let at = raw(kind::DATA, 0, 1, &[0; 16_384]);
    assert!(matches!(
        one(&at),
        Ok(Frame::Data {
            flow_len: 16_384,
            ..
        })
    ));
    let over = header(16_385, kind::DATA, 0, 1);
    assert!(conn(FrameSizeError)(decode(&over, 16_384).unwrap_err()));
    let over = raw(kind::DATA, 0, 1, &[0; 16_385]);
    assert!(matches!(decode(&over, 16_385), Ok(Some(_))));
}

/// §6.1: padding is stripped from DATA but counted by flow control;
/// padding as long as the payload is a PROTOCOL_ERROR.
#[test]
fn data_padding() {
    let f = raw(kind::DATA, flag::PADDED, 3, &[2, b'h', b'i', 0, 0]);
    assert_eq!(
        one(&f),
        Ok(Frame::Data {
            stream: 3,
            end_stream: false,
            data: b"hi",
            flow_len: 5
        })
    );
    let all_pad = raw(kind::DATA, flag::PADDED, 3, &[4, 0, 0, 0, 0]);
    assert!(matches!(
        one(&all_pad),
        Ok(Frame::Data {
            data: b"",
            flow_len: 5,
            ..
        })
    ));
    let over = raw(kind::DATA, flag::PADDED, 3, &[5, 0, 0, 0, 0]);
    assert!(conn(ProtocolError)(one(&over).unwrap_err()));
    let empty = raw(kind::DATA, flag::PADDED, 3, &[]);
    assert!(conn(FrameSizeError)(one(&empty).unwrap_err()));
}

/// §6.2: HEADERS padding and priority fields are stripped.
#[test]
fn headers_padding_and_priority() {
    let mut p = vec![1];
    p.extend_from_slice(&[0x80, 0, 0, 5, 16]);
    p.extend_from_slice(b"blk");
    p.push(0);
    let f = raw(
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
        7,
        &p,
    );
    assert_eq!(
        one(&f),
        Ok(Frame::Headers {
            stream: 7,
            end_stream: false,
            end_headers: true,
            block: b"blk",
            depends_on: Some(5)
        })
    );
    let short = raw(kind::HEADERS, flag::PRIORITY, 7, &[0, 0, 0, 5]);
    assert!(conn(FrameSizeError)(one(&short).unwrap_err()));
    // Padding that eats the priority fields (§6.2).
    let eats = raw(
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY,
        7,
        &[1, 0, 0, 0, 5, 16],
    );
    assert!(conn(ProtocolError)(one(&eats).unwrap_err()));
    let fits = raw(
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY,
        7,
        &[1, 0, 0, 0, 5, 16, 0],
    );
    assert!(matches!(one(&fits), Ok(Frame::Headers { block: b"", .. })));
    let pad_over = raw(kind::HEADERS, flag::PADDED, 7, &[3, b'a', b'b']);
    assert!(conn(ProtocolError)(one(&pad_over).unwrap_err()));
}

/// The length and stream rules of §6, table-style: (name, frame, check).
#[test]
fn field_rules() {
    type Check = Box<dyn Fn(FrameError) -> bool>;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "§6.1 DATA on 0",
            raw(kind::DATA, 0, 0, b"x"),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.2 HEADERS on 0",
            raw(kind::HEADERS, 4, 0, b""),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.3 PRIORITY 4 bytes",
            raw(kind::PRIORITY, 0, 1, &[0; 4]),
            Box::new(stream(1, FrameSizeError)),
        ),
        (
            "§6.3 PRIORITY 6 bytes",
            raw(kind::PRIORITY, 0, 1, &[0; 6]),
            Box::new(stream(1, FrameSizeError)),
        ),
        (
            "§6.3 PRIORITY on 0",
            raw(kind::PRIORITY, 0, 0, &[0; 5]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.4 RST_STREAM 3 bytes",
            raw(kind::RST_STREAM, 0, 1, &[0; 3]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.4 RST_STREAM 5 bytes",
            raw(kind::RST_STREAM, 0, 1, &[0; 5]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.4 RST_STREAM on 0",
            raw(kind::RST_STREAM, 0, 0, &[0; 4]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.5 SETTINGS on a stream",
            raw(kind::SETTINGS, 0, 1, &[]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.5 SETTINGS length 5",
            raw(kind::SETTINGS, 0, 0, &[0; 5]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.5 SETTINGS length 7",
            raw(kind::SETTINGS, 0, 0, &[0; 7]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.5 ACK with payload",
            raw(kind::SETTINGS, 1, 0, &[0; 6]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.5.2 ENABLE_PUSH 2",
            raw(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.5.2 window 2^31",
            raw(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            Box::new(conn(FlowControlError)),
        ),
        (
            "§6.5.2 frame size 16383",
            raw(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.5.2 frame size 2^24",
            raw(kind::SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.7 PING 7 bytes",
            raw(kind::PING, 0, 0, &[0; 7]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.7 PING 9 bytes",
            raw(kind::PING, 0, 0, &[0; 9]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.7 PING on a stream",
            raw(kind::PING, 0, 1, &[0; 8]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.8 GOAWAY 7 bytes",
            raw(kind::GOAWAY, 0, 0, &[0; 7]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.8 GOAWAY on a stream",
            raw(kind::GOAWAY, 0, 1, &[0; 8]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.9 WINDOW_UPDATE 3 bytes",
            raw(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 1]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.9 WINDOW_UPDATE 5 bytes",
            raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1, 0]),
            Box::new(conn(FrameSizeError)),
        ),
        (
            "§6.9 zero increment, stream",
            raw(kind::WINDOW_UPDATE, 0, 3, &[0; 4]),
            Box::new(stream(3, ProtocolError)),
        ),
        (
            "§6.9 zero increment, connection",
            raw(kind::WINDOW_UPDATE, 0, 0, &[0x80, 0, 0, 0]),
            Box::new(conn(ProtocolError)),
        ),
        (
            "§6.10 CONTINUATION on 0",
            raw(kind::CONTINUATION, 4, 0, b""),
            Box::new(conn(ProtocolError)),
        ),
    ];
    for (name, frame, check) in cases {
        let err = one(&frame).expect_err(name);
        assert!(check(err), "{name}: {err}");
    }
}

#[test]
fn valid_control_frames() {
    let mut s = Vec::new();
    write_settings(
        &mut s,
        &[(setting::INITIAL_WINDOW_SIZE, MAX_WINDOW), (0x99, 7)],
    );
    let Ok(Frame::Settings { ack: false, params }) = one(&s) else {
        panic!()
    };
    assert_eq!(
        params.iter().collect::<Vec<_>>(),
        [(4, MAX_WINDOW), (0x99, 7)]
    );
    let mut a = Vec::new();
    write_settings_ack(&mut a);
    assert!(matches!(one(&a), Ok(Frame::Settings { ack: true, .. })));
    let mut p = Vec::new();
    write_ping(&mut p, true, *b"12345678");
    assert_eq!(
        one(&p),
        Ok(Frame::Ping {
            ack: true,
            data: *b"12345678"
        })
    );
    let mut g = Vec::new();
    write_goaway(&mut g, 9, EnhanceYourCalm, b"calm");
    assert_eq!(
        one(&g),
        Ok(Frame::GoAway {
            last_stream: 9,
            code: EnhanceYourCalm,
            debug: b"calm"
        })
    );
    let mut r = Vec::new();
    write_rst_stream(&mut r, 5, Cancel);
    assert_eq!(
        one(&r),
        Ok(Frame::RstStream {
            stream: 5,
            code: Cancel
        })
    );
    let mut w = Vec::new();
    write_window_update(&mut w, 0, MAX_WINDOW);
    assert_eq!(
        one(&w),
        Ok(Frame::WindowUpdate {
            stream: 0,
            increment: MAX_WINDOW
        })
    );
    let unknown = raw(0xfa, 0xff, 3, b"whatever");
    assert_eq!(
        one(&unknown),
        Ok(Frame::Unknown {
            kind: 0xfa,
            stream: 3
        })
    );
    let push = raw(kind::PUSH_PROMISE, 4, 1, &[0, 0, 0, 2]);
    assert_eq!(one(&push), Ok(Frame::PushPromise { stream: 1 }));
    // §4.1: the reserved bit of a stream identifier is ignored.
    let r = raw(kind::RST_STREAM, 0, 0x8000_0001, &[0, 0, 0, 8]);
    assert_eq!(
        one(&r),
        Ok(Frame::RstStream {
            stream: 1,
            code: Cancel
        })
    );
}

/// §4.3: a block longer than the max frame size is split into HEADERS and
/// CONTINUATION frames; only the last has END_HEADERS, only the first
/// END_STREAM.
#[test]
fn headers_split_into_continuations() {
    let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let mut out = Vec::new();
    write_headers(&mut out, 1, &block, true, 16_384);
    let mut at = 0;
    let mut joined = Vec::new();
    let mut frames = Vec::new();
    while let Some((f, n)) = decode(&out[at..], 16_384).unwrap() {
        at += n;
        match f {
            Frame::Headers {
                block,
                end_stream,
                end_headers,
                ..
            } => {
                frames.push(("H", end_stream, end_headers));
                joined.extend_from_slice(block);
            }
            Frame::Continuation {
                block, end_headers, ..
            } => {
                frames.push(("C", false, end_headers));
                joined.extend_from_slice(block);
            }
            f => panic!("{f:?}"),
        }
    }
    assert_eq!(at, out.len());
    assert_eq!(joined, block);
    assert_eq!(
        frames,
        [("H", true, false), ("C", false, false), ("C", false, true)]
    );
    let mut small = Vec::new();
    write_headers(&mut small, 3, b"ab", false, 16_384);
    assert_eq!(
        one(&small),
        Ok(Frame::Headers {
            stream: 3,
            end_stream: false,
            end_headers: true,
            block: b"ab",
            depends_on: None
        })
    );
}

#[test]
fn frame_len_reads_the_header() {
    assert_eq!(frame_len(&[0, 0, 5, 0, 0, 0, 0, 0]), None);
    assert_eq!(frame_len(&[0, 1, 0, 0, 0, 0, 0, 0, 1]), Some(256 + 9));
}

#[test]
fn errors_say_their_scope() {
    let e = FrameError::Stream {
        stream: 3,
        code: StreamClosed,
        why: "x",
    };
    assert_eq!(e.to_string(), "stream 3 error STREAM_CLOSED: x");
    let e = FrameError::Connection {
        code: FrameSizeError,
        why: "y",
    };
    assert_eq!(e.to_string(), "connection error FRAME_SIZE_ERROR: y");
    for v in 0..=0xd {
        assert_eq!(ErrorCode::from_u32(v) as u32, v);
    }
    assert_eq!(ErrorCode::from_u32(0x1234), InternalError);
}
