//! ggml tensor types and the block geometry needed to compute a tensor's byte size.

/// A ggml tensor element type as stored in a GGUF tensor info.
///
/// Only types that current llama.cpp can load are listed; removed or reserved codes
/// (4, 5, 31-33, 36-38) are deliberately absent so that they are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(non_camel_case_types)] // Match ggml's own spelling so names are greppable across both code bases.
pub enum GgmlType {
    /// 32-bit float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit quantization, block of 32, one scale.
    Q4_0 = 2,
    /// 4-bit quantization, block of 32, scale and minimum.
    Q4_1 = 3,
    /// 5-bit quantization, block of 32, one scale.
    Q5_0 = 6,
    /// 5-bit quantization, block of 32, scale and minimum.
    Q5_1 = 7,
    /// 8-bit quantization, block of 32, one scale.
    Q8_0 = 8,
    /// 8-bit quantization, block of 32, scale and sum.
    Q8_1 = 9,
    /// 2-bit k-quant.
    Q2_K = 10,
    /// 3-bit k-quant.
    Q3_K = 11,
    /// 4-bit k-quant.
    Q4_K = 12,
    /// 5-bit k-quant.
    Q5_K = 13,
    /// 6-bit k-quant.
    Q6_K = 14,
    /// 8-bit k-quant.
    Q8_K = 15,
    /// 2.06-bit i-quant.
    IQ2_XXS = 16,
    /// 2.31-bit i-quant.
    IQ2_XS = 17,
    /// 3.06-bit i-quant.
    IQ3_XXS = 18,
    /// 1.56-bit i-quant.
    IQ1_S = 19,
    /// 4.5-bit non-linear quant, block of 32.
    IQ4_NL = 20,
    /// 3.44-bit i-quant.
    IQ3_S = 21,
    /// 2.5-bit i-quant.
    IQ2_S = 22,
    /// 4.25-bit i-quant.
    IQ4_XS = 23,
    /// 8-bit integer.
    I8 = 24,
    /// 16-bit integer.
    I16 = 25,
    /// 32-bit integer.
    I32 = 26,
    /// 64-bit integer.
    I64 = 27,
    /// 64-bit float.
    F64 = 28,
    /// 1.75-bit i-quant.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// Ternary quant, 1.69 bits.
    TQ1_0 = 34,
    /// Ternary quant, 2.06 bits.
    TQ2_0 = 35,
    /// MX FP4, block of 32.
    MXFP4 = 39,
}

impl GgmlType {
    /// Maps a type code from the file to a known type, or `None` for unknown/removed codes.
    pub fn from_u32(code: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match code {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// The type code as stored in GGUF.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Number of elements per quantization block (1 for plain scalar types).
    pub fn block_size(self) -> u64 {
        self.geometry().0
    }

    /// Number of bytes per block.
    pub fn type_size(self) -> u64 {
        self.geometry().1
    }

    /// ggml's name for the type, e.g. `"Q4_1"`.
    pub fn name(self) -> &'static str {
        self.geometry().2
    }

    // One table for all three properties so they cannot drift apart; values from ggml.c's type_traits.
    fn geometry(self) -> (u64, u64, &'static str) {
        use GgmlType::*;
        match self {
            F32 => (1, 4, "F32"),
            F16 => (1, 2, "F16"),
            Q4_0 => (32, 18, "Q4_0"),
            Q4_1 => (32, 20, "Q4_1"),
            Q5_0 => (32, 22, "Q5_0"),
            Q5_1 => (32, 24, "Q5_1"),
            Q8_0 => (32, 34, "Q8_0"),
            Q8_1 => (32, 36, "Q8_1"),
            Q2_K => (256, 84, "Q2_K"),
            Q3_K => (256, 110, "Q3_K"),
            Q4_K => (256, 144, "Q4_K"),
            Q5_K => (256, 176, "Q5_K"),
            Q6_K => (256, 210, "Q6_K"),
            Q8_K => (256, 292, "Q8_K"),
            IQ2_XXS => (256, 66, "IQ2_XXS"),
            IQ2_XS => (256, 74, "IQ2_XS"),
            IQ3_XXS => (256, 98, "IQ3_XXS"),
            IQ1_S => (256, 50, "IQ1_S"),
            IQ4_NL => (32, 18, "IQ4_NL"),
            IQ3_S => (256, 110, "IQ3_S"),
            IQ2_S => (256, 82, "IQ2_S"),
            IQ4_XS => (256, 136, "IQ4_XS"),
            I8 => (1, 1, "I8"),
            I16 => (1, 2, "I16"),
            I32 => (1, 4, "I32"),
            I64 => (1, 8, "I64"),
            F64 => (1, 8, "F64"),
            IQ1_M => (256, 56, "IQ1_M"),
            BF16 => (1, 2, "BF16"),
            TQ1_0 => (256, 54, "TQ1_0"),
            TQ2_0 => (256, 66, "TQ2_0"),
            MXFP4 => (32, 17, "MXFP4"),
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::GgmlType;

    #[test]
    fn codes_round_trip_and_gaps_are_unknown() {
        let mut known = 0;
        for code in 0..64u32 {
            match GgmlType::from_u32(code) {
                Some(t) => {
                    known += 1;
                    assert_eq!(t.as_u32(), code);
                    assert!(t.block_size() >= 1 && t.type_size() >= 1);
                }
                None => assert!(
                    matches!(code, 4 | 5 | 31..=33 | 36..=38) || code >= 40,
                    "code {code} unexpectedly unknown"
                ),
            }
        }
        assert_eq!(known, 32);
        assert_eq!(GgmlType::from_u32(u32::MAX), None);
    }

    #[test]
    fn geometry_spot_checks() {
        assert_eq!(GgmlType::Q4_1.block_size(), 32);
        assert_eq!(GgmlType::Q4_1.type_size(), 20);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::MXFP4.type_size(), 17);
        assert_eq!(GgmlType::BF16.name(), "BF16");
        assert_eq!(GgmlType::IQ2_XXS.to_string(), "IQ2_XXS");
    }
}
