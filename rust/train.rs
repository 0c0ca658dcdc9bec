//! BPE training: Word plus merge deltas, the pair index and the priority queue with lazy refresh,
//! ties broken on pair *bytes*. (Filled in by the trainer work.)
