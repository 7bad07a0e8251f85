//! The verification code: a few symbols both sides of a call show, derived from the two DTLS
//! certificate fingerprints in the SDPs. The media is encrypted with keys tied to those
//! certificates; a relay that swapped a fingerprint to sit in the middle would give each side
//! a different pair, so the codes would differ.
//!
//! The fingerprints are already SHA-256 hashes of the certificates: their bytes are uniformly
//! distributed, and combining them with XOR is the same whichever side computes it. Five
//! symbols of 64 carry 30 bits: enough to catch a relay that swapped certificates, not a
//! proof against one that spends hours searching for certificates whose codes collide.

/// The symbols of the code, 64 of them (6 bits each), distinct at a glance.
const SYMBOLS: [&str; 64] = [
    "🐶", "🐱", "🐭", "🐹", "🐰", "🦊", "🐻", "🐼", "🐨", "🐯", "🦁", "🐮", "🐷", "🐸", "🐵", "🐔",
    "🐧", "🐦", "🦆", "🦉", "🐴", "🦄", "🐝", "🦋", "🐌", "🐞", "🐢", "🐍", "🐙", "🦀", "🐬", "🐳",
    "🌵", "🌲", "🌻", "🍄", "🌙", "⭐", "🔥", "🌈", "☂️", "❄️", "🍎", "🍌", "🍇", "🍓", "🥕", "🌽",
    "🍕", "🎂", "⚽", "🎸", "🎈", "🎁", "🔑", "🔔", "📚", "✏️", "🚲", "🚀", "⛵", "🏠", "⏰", "💡",
];

/// How many symbols a code has.
pub const CODE_LENGTH: usize = 5;

/// The certificate fingerprint of an SDP (`a=fingerprint:<hash> AB:CD:...`), as bytes.
pub fn fingerprint(sdp: &str) -> Option<Vec<u8>> {
    let line = sdp
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("a=fingerprint:"))?;
    let (_, hex) = line.split_once(' ')?;
    hex.split(':')
        .map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .filter(|bytes| bytes.len() >= 4)
}

/// The code for a call whose two sides have fingerprints `a` and `b` (in either order).
pub fn code(a: &[u8], b: &[u8]) -> String {
    let mixed: Vec<u8> = a.iter().zip(b).map(|(x, y)| x ^ y).collect();
    let mut bits: u64 = 0;
    for byte in mixed.iter().take(8) {
        bits = (bits << 8) | u64::from(*byte);
    }
    // Pushed one by one rather than joined: `join` alone is 1.2 KB of the page's code.
    let mut code = String::new();
    for n in 0..CODE_LENGTH {
        if n > 0 {
            code.push(' ');
        }
        code.push_str(SYMBOLS[((bits >> (58 - 6 * n)) & 63) as usize]);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP_A: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\na=fingerprint:sha-256 \
        12:34:56:78:9A:BC:DE:F0:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:01:02:03:04:05:06:07:08\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
    const SDP_B: &str = "v=0\r\na=fingerprint:sha-256 \
        FE:DC:BA:98:76:54:32:10:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:10:20:30:40:50:60:70:80\r\n";

    #[test]
    fn both_sides_get_the_same_code_and_a_swapped_certificate_another() {
        let a = fingerprint(SDP_A).expect("a fingerprint");
        let b = fingerprint(SDP_B).expect("a fingerprint");
        assert_eq!(a.len(), 32);
        assert_eq!(a[0], 0x12);
        let ours = code(&a, &b);
        assert_eq!(ours, code(&b, &a), "the same on both sides");
        assert_eq!(ours.split(' ').count(), CODE_LENGTH);
        // A relay in the middle shows each side its own certificate instead of the other's.
        let mut forged = b.clone();
        forged[1] ^= 0x40;
        assert_ne!(code(&a, &forged), ours);
    }

    #[test]
    fn sdps_without_a_usable_fingerprint_give_none() {
        assert_eq!(fingerprint("v=0\r\n"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256 ZZ:01\r\n"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256\r\n"), None);
    }
}
