//! Encoding: rank-ordered merging of one pre-token, cached, plus batch and file encoding.
//! (Filled in by the encoder work.)
