//! Feeds arbitrary text to the distinguished-name parser (administrators write certificate
//! subjects to map): no input may panic, and a parsed name is canonical, so parsing it again
//! gives it back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = highside_identity::parse_dn(text) {
        assert_eq!(highside_identity::parse_dn(&canonical).as_ref(), Ok(&canonical));
    }
});
