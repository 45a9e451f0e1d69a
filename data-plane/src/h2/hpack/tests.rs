use super::*;

fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut fields = Vec::new();
    decoder.decode(block, |n, v| {
        fields.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(v.to_vec()).unwrap(),
        ));
    })?;
    Ok(fields)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// RFC 7541 C.3 (without Huffman) and C.4 (with): three requests on one connection, the
/// dynamic table carried from one to the next.
#[test]
fn rfc_request_examples() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut decoder = Decoder::default();
        assert_eq!(
            decode_all(&mut decoder, &hex(blocks[0])).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(
            decode_all(&mut decoder, &hex(blocks[1])).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(
            decode_all(&mut decoder, &hex(blocks[2])).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(decoder.size, 164);
    }
}

/// RFC 7541 C.5: responses with a 256-byte table, so that entries are evicted.
#[test]
fn rfc_response_examples_evict() {
    let mut decoder = Decoder::default();
    // A table size update to 256 first, as the encoder of C.5 would have been told.
    let mut first = vec![0x3f, 0xe1, 0x01];
    first.extend(hex(
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
    ));
    let got = decode_all(&mut decoder, &first).unwrap();
    assert_eq!(got[0], (":status".into(), "302".into()));
    assert_eq!(decoder.size, 222);
    let got = decode_all(&mut decoder, &hex("4803 3330 37c1 c0bf")).unwrap();
    assert_eq!(
        got,
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(decoder.size, 222);
    assert_eq!(decoder.table.len(), 4);
}

#[test]
fn bad_blocks_are_compression_errors() {
    let mut decoder = Decoder::default();
    assert_eq!(decode_all(&mut decoder, &[0x80]), Err(DecodeError::Index));
    assert_eq!(decode_all(&mut decoder, &[0xbe]), Err(DecodeError::Index));
    assert_eq!(
        decode_all(&mut decoder, &[0x04, 0x05, b'a']),
        Err(DecodeError::String)
    );
    assert_eq!(
        decode_all(&mut decoder, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(DecodeError::Integer)
    );
    assert_eq!(
        decode_all(&mut decoder, &[0x82, 0x20]),
        Err(DecodeError::TableSize)
    );
    assert_eq!(
        decode_all(&mut decoder, &[0x3f, 0xe2, 0x1f]),
        Err(DecodeError::TableSize)
    );
    assert_eq!(
        decode_all(&mut decoder, &[0x04, 0x81, 0x00]),
        Err(DecodeError::Huffman)
    );
}

#[test]
fn huffman_literals_decode() {
    let mut block = vec![0x00];
    let name = huffman::encode(b"x-custom");
    block.push(0x80 | name.len() as u8);
    block.extend(&name);
    let value = huffman::encode(b"some value");
    block.push(0x80 | value.len() as u8);
    block.extend(&value);
    let got = decode_all(&mut Decoder::default(), &block).unwrap();
    assert_eq!(got, pairs(&[("x-custom", "some value")]));
}

#[test]
fn the_encoder_round_trips() {
    let mut out = Vec::new();
    encode_status(&mut out, 200);
    encode_status(&mut out, 502);
    encode_field(&mut out, b"content-type", b"text/plain", false);
    encode_field(&mut out, b"x-request-id", b"abc", true);
    let long = "v".repeat(300);
    encode_field(&mut out, b"x-long", long.as_bytes(), false);
    let got = decode_all(&mut Decoder::default(), &out).unwrap();
    assert_eq!(
        got,
        pairs(&[
            (":status", "200"),
            (":status", "502"),
            ("content-type", "text/plain"),
            ("x-request-id", "abc"),
            ("x-long", &long),
        ])
    );
}
