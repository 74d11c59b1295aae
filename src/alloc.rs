//! The process allocator: the system allocator, except that very large
//! requests get address space only (`MAP_NORESERVE`).
//!
//! Why: the protocol decoder sizes a `Vec` from a request's array length
//! before reading the elements. A hostile frame can claim two billion
//! elements; with the system allocator that request fails and Rust aborts the
//! whole broker. Reserved-but-untouched address space costs nothing, the
//! decode then fails on the missing bytes, and the connection is closed.

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at least this large are served by `mmap(MAP_NORESERVE)`.
const HUGE_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: an anonymous private mapping; no file, no aliasing.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p as *mut u8
            }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { self.alloc(layout) } // fresh anonymous pages are zero
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of exactly this size.
            unsafe { libc::munmap(ptr as *mut libc::c_void, layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_allocation_reserves_without_committing() {
        let a = Allocator;
        let layout = Layout::from_size_align(200 << 30, 8).unwrap(); // 200 GiB
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7; // touching one page commits one page
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_across_the_threshold_keeps_contents() {
        let a = Allocator;
        unsafe {
            let small = Layout::from_size_align(16, 8).unwrap();
            let p = a.alloc(small);
            p.write_bytes(9, 16);
            let q = a.realloc(p, small, HUGE_BYTES);
            assert_eq!(*q.add(15), 9);
            let huge = Layout::from_size_align(HUGE_BYTES, 8).unwrap();
            let r = a.realloc(q, huge, 32);
            assert_eq!(*r.add(15), 9);
            a.dealloc(r, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
