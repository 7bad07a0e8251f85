//! Inviting people: the link to this room, and a new room nobody can guess.

/// The link that opens `room` on the page at `origin` + `path` (no `#true`: whoever opens it
/// waits, or calls, as the room's other pages decide; no `name`: that is the sender's).
pub fn room_link(origin: &str, path: &str, room: &str) -> String {
    let mut link = format!("{origin}{path}");
    if room != protocol::DEFAULT_ROOM {
        link.push_str("?room=");
        link.push_str(&encode(room));
    }
    link
}

/// A room name from 16 random bytes: 32 hex digits, 128 bits, which nobody finds by trying.
pub fn new_room_name(random: [u8; 16]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` made safe for a query value: letters, digits and `-._~` as they are, every other
/// byte as `%XX`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_link_names_the_room_and_nothing_else() {
        assert_eq!(
            room_link("https://call.example", "/", "kitchen"),
            "https://call.example/?room=kitchen"
        );
        assert_eq!(
            room_link("http://localhost:8080", "/", protocol::DEFAULT_ROOM),
            "http://localhost:8080/"
        );
        assert_eq!(
            room_link("http://h", "/app/", "a b&c=ü"),
            "http://h/app/?room=a%20b%26c%3D%C3%BC"
        );
    }

    #[test]
    fn a_new_room_has_128_random_bits() {
        let name = new_room_name([0xab; 16]);
        assert_eq!(name.len(), 32);
        assert_eq!(name, "ab".repeat(16));
        assert!(protocol::validate_room(&name).is_ok());
        assert_ne!(new_room_name([1; 16]), new_room_name([2; 16]));
    }
}
