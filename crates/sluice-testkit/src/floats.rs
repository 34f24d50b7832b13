//! Decimal numbers that a float parser must round with care: each is
//! near the midpoint of two doubles, subnormal, or longer than 17 digits.
//! A parser that rounds them correctly gives the bits of Rust's own
//! `str::parse::<f64>`; one that does not lands a unit in the last place
//! away on some of them.

/// The texts, as they appear in a JSON payload.
pub const HARD_FLOATS: [&str; 6] = [
    "2.2250738585072011e-308",
    "1.00000000000000011102230246251565404236316680908203125",
    "9007199254740993.0",
    "0.30000000000000004",
    "7.1e-323",
    "123456.78901234567890123",
];
