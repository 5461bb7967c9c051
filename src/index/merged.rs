//! Merging inputs each sorted in [`Entry::order`] into one stream in that order: for writing
//! runs into one file ([`merge`](super::merge)) and for reading a session's runs and buffer as
//! one (the store).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{Entry, IndexError};

/// The next entry of one input, ordered so that the heap pops the smallest, and of equal
/// entries the one from the earliest input.
#[derive(Debug)]
struct Head {
    entry: Entry,
    input: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> Ordering {
        // Reversed: BinaryHeap pops the greatest.
        other.entry.order(&self.entry).then(other.input.cmp(&self.input))
    }
}

/// Inputs each in [`Entry::order`], merged into one in that order; equal entries come in input
/// order. The first error of an input is yielded, then the merge ends. Holds one entry per
/// input.
#[derive(Debug)]
pub struct Merged<I> {
    inputs: Vec<I>,
    heap: BinaryHeap<Head>,
    started: bool,
    done: bool,
}

impl<I: Iterator<Item = Result<Entry, IndexError>>> Merged<I> {
    /// Merges `inputs`.
    pub fn new(inputs: Vec<I>) -> Merged<I> {
        let heap = BinaryHeap::with_capacity(inputs.len());
        Merged { inputs, heap, started: false, done: false }
    }

    /// Takes the next entry of `input` into the heap.
    fn pull(&mut self, input: usize) -> Result<(), IndexError> {
        if let Some(next) = self.inputs[input].next() {
            self.heap.push(Head { entry: next?, input });
        }
        Ok(())
    }
}

impl<I: Iterator<Item = Result<Entry, IndexError>>> Iterator for Merged<I> {
    type Item = Result<Entry, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            for i in 0..self.inputs.len() {
                if let Err(e) = self.pull(i) {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let head = self.heap.pop()?;
        if let Err(e) = self.pull(head.input) {
            self.done = true;
            return Some(Err(e));
        }
        Some(Ok(head.entry))
    }
}
