//! Feeds arbitrary text to the dollar-amount parser (prices, budgets, fees and caps arrive as
//! decimal strings in admin requests). No input may panic, and whatever parses prints back to
//! text that parses to the same amount.
#![no_main]

use highside_metering::Micros;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = text.parse::<Micros>() {
        assert_eq!(m.to_string().parse::<Micros>(), Ok(m));
    }
});
