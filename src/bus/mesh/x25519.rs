//! Curve25519 arithmetic for the link handshake's password-authenticated key
//! exchange (`pake`): field elements mod 2^255−19 as sixteen 16-bit limbs,
//! the X25519 Montgomery ladder (RFC 7748), and the Elligator 2 map from a
//! field element to a point (RFC 9380 §6.7.1, its u-coordinate). ring does
//! X25519 only with its own generator and single-use keys; the exchange
//! needs a generator made from the cookie and one scalar used twice. The
//! arithmetic follows TweetNaCl's: fixed sequences of operations (no branch
//! or index on secret data), checked against RFC 7748's test vectors.

/// A field element: value = Σ limb[i]·2^(16·i), limbs loosely reduced.
#[derive(Clone, Copy)]
struct Fe([i64; 16]);

const ZERO: Fe = Fe([0; 16]);
const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// (A − 2) / 4 = 121665 for the ladder.
const A24: Fe = Fe([0xDB41, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// The curve's A = 486662 (J in RFC 9380).
const J: Fe = Fe([0x6D06, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// (p − 1) / 2 = 2^254 − 10, little-endian: the Legendre symbol's exponent.
const HALF_P_MINUS_1: [u8; 32] = {
    let mut e = [0xff; 32];
    e[0] = 0xf6;
    e[31] = 0x3f;
    e
};

fn carry(o: &mut Fe) {
    for i in 0..16 {
        o.0[i] += 1 << 16;
        let c = o.0[i] >> 16;
        if i < 15 {
            o.0[i + 1] += c - 1;
        } else {
            o.0[0] += 38 * (c - 1);
        }
        o.0[i] -= c << 16;
    }
}

/// Swaps `p` and `q` when `b` is 1, in constant time.
fn swap(p: &mut Fe, q: &mut Fe, b: i64) {
    let mask = !(b - 1);
    for i in 0..16 {
        let t = mask & (p.0[i] ^ q.0[i]);
        p.0[i] ^= t;
        q.0[i] ^= t;
    }
}

fn pack(n: &Fe) -> [u8; 32] {
    let mut t = *n;
    carry(&mut t);
    carry(&mut t);
    carry(&mut t);
    for _ in 0..2 {
        let mut m = ZERO;
        m.0[0] = t.0[0] - 0xffed;
        for i in 1..15 {
            m.0[i] = t.0[i] - 0xffff - ((m.0[i - 1] >> 16) & 1);
            m.0[i - 1] &= 0xffff;
        }
        m.0[15] = t.0[15] - 0x7fff - ((m.0[14] >> 16) & 1);
        let b = (m.0[15] >> 16) & 1;
        m.0[14] &= 0xffff;
        swap(&mut t, &mut m, 1 - b);
    }
    let mut o = [0u8; 32];
    for i in 0..16 {
        o[2 * i] = (t.0[i] & 0xff) as u8;
        o[2 * i + 1] = (t.0[i] >> 8) as u8;
    }
    o
}

fn unpack(n: &[u8; 32]) -> Fe {
    let mut o = ZERO;
    for i in 0..16 {
        o.0[i] = i64::from(n[2 * i]) + (i64::from(n[2 * i + 1]) << 8);
    }
    o.0[15] &= 0x7fff;
    o
}

fn add(a: &Fe, b: &Fe) -> Fe {
    let mut o = ZERO;
    for i in 0..16 {
        o.0[i] = a.0[i] + b.0[i];
    }
    o
}

fn sub(a: &Fe, b: &Fe) -> Fe {
    let mut o = ZERO;
    for i in 0..16 {
        o.0[i] = a.0[i] - b.0[i];
    }
    o
}

fn mul(a: &Fe, b: &Fe) -> Fe {
    let mut t = [0i64; 31];
    for i in 0..16 {
        for j in 0..16 {
            t[i + j] += a.0[i] * b.0[j];
        }
    }
    for i in 0..15 {
        t[i] += 38 * t[i + 16];
    }
    let mut o = ZERO;
    o.0.copy_from_slice(&t[..16]);
    carry(&mut o);
    carry(&mut o);
    o
}

fn square(a: &Fe) -> Fe {
    mul(a, a)
}

/// `a^e` for a public exponent `e` (little-endian bytes).
fn pow(a: &Fe, e: &[u8; 32]) -> Fe {
    let mut r = ONE;
    for bit in (0..256).rev() {
        r = square(&r);
        if (e[bit / 8] >> (bit % 8)) & 1 == 1 {
            r = mul(&r, a);
        }
    }
    r
}

/// 1/a (0 for 0): a^(p−2).
fn invert(a: &Fe) -> Fe {
    let mut c = *a;
    for i in (0..254).rev() {
        c = square(&c);
        if i != 2 && i != 4 {
            c = mul(&c, a);
        }
    }
    c
}

/// X25519(k, u) (RFC 7748 §5): the u-coordinate of k·P, k clamped.
pub fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    let mut z = *k;
    z[31] = (z[31] & 127) | 64;
    z[0] &= 248;
    let x = unpack(u);
    let (mut a, mut b, mut c, mut d) = (ONE, x, ZERO, ONE);
    for i in (0..255).rev() {
        let r = i64::from((z[i >> 3] >> (i & 7)) & 1);
        swap(&mut a, &mut b, r);
        swap(&mut c, &mut d, r);
        let e = add(&a, &c);
        a = sub(&a, &c);
        c = add(&b, &d);
        b = sub(&b, &d);
        d = square(&e);
        let f = square(&a);
        a = mul(&c, &a);
        c = mul(&b, &e);
        let e2 = add(&a, &c);
        a = sub(&a, &c);
        b = square(&a);
        c = sub(&d, &f);
        a = mul(&c, &A24);
        a = add(&a, &d);
        c = mul(&c, &a);
        a = mul(&d, &f);
        d = mul(&b, &x);
        b = square(&e2);
        swap(&mut a, &mut b, r);
        swap(&mut c, &mut d, r);
    }
    pack(&mul(&a, &invert(&c)))
}

/// Elligator 2 for curve25519 (RFC 9380 §6.7.1, Z = 2), u-coordinate only:
/// a point on the curve (never the twist) for any 32 bytes, none of them
/// revealing a discrete log.
pub fn elligator2(r: &[u8; 32]) -> [u8; 32] {
    let r = unpack(r);
    let tv1 = add(&square(&r), &square(&r)); // 2·r² (never −1: 2 is not a square)
    let x1 = sub(&ZERO, &mul(&J, &invert(&add(&tv1, &ONE)))); // −J / (1 + 2r²)
    let gx1 = mul(&add(&mul(&add(&x1, &J), &x1), &ONE), &x1); // x1³ + J·x1² + x1
    let mut x2 = sub(&sub(&ZERO, &x1), &J); // −x1 − J
                                            // gx1 a square (or 0): x1, else x2. Legendre symbol: gx1^((p−1)/2).
    let legendre = pack(&pow(&gx1, &HALF_P_MINUS_1));
    let minus_one = pack(&sub(&ZERO, &ONE));
    let not_square = i64::from(legendre == minus_one);
    let mut x1 = x1;
    swap(&mut x1, &mut x2, not_square);
    pack(&x1)
}

/// True when `u` is the u-coordinate of a point on curve25519 itself (not
/// its twist): u³ + A·u² + u is a square.
pub fn on_curve(u: &[u8; 32]) -> bool {
    let x = unpack(u);
    let g = mul(&add(&mul(&add(&x, &J), &x), &ONE), &x);
    let legendre = pack(&pow(&g, &HALF_P_MINUS_1));
    legendre != pack(&sub(&ZERO, &ONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 §5.2, the two test vectors.
    #[test]
    fn rfc7748_vectors() {
        let k = hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let out = hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
        assert_eq!(x25519(&k, &u), out);
        let k = hex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
        let u = hex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
        let out = hex("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
        assert_eq!(x25519(&k, &u), out);
    }

    /// RFC 7748 §6.1: Alice and Bob agree.
    #[test]
    fn rfc7748_diffie_hellman() {
        let mut nine = [0u8; 32];
        nine[0] = 9;
        let a = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let b = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let a_pub = x25519(&a, &nine);
        assert_eq!(
            a_pub,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(x25519(&b, &a_pub), k);
        assert_eq!(x25519(&a, &x25519(&b, &nine)), k);
    }

    #[test]
    fn elligator2_lands_on_the_curve_and_shares_a_generator() {
        for seed in 0u8..40 {
            let mut r = [seed.wrapping_mul(37); 32];
            r[0] = seed;
            r[31] &= 0x7f;
            let g = elligator2(&r);
            assert!(on_curve(&g), "seed {seed}");
            // Two secret scalars on that generator agree, as on the base point.
            let (a, b) = ([seed ^ 0x55; 32], [seed ^ 0xaa; 32]);
            assert_eq!(x25519(&a, &x25519(&b, &g)), x25519(&b, &x25519(&a, &g)));
        }
        let mut nine = [0u8; 32];
        nine[0] = 9;
        assert!(on_curve(&nine), "the base point");
        let mut twist = [0u8; 32];
        twist[0] = 2;
        assert!(!on_curve(&twist), "u = 2 is on the twist");
    }
}
