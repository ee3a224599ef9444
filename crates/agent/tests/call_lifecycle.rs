//! Opening and closing many calls leaves nothing behind: no live task, no memory.

// Counting the process's live bytes takes a global allocator, which is unsafe to implement.
#![allow(unsafe_code)]

mod call_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::{Call, EndReason, NoHook};
use call_support::*;

/// Counts the bytes this test process has allocated and not yet freed.
struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const CALLS: usize = 1_000;

/// Opens `CALLS` calls that each greet the student (so LLM-free replies, TTS streams, the
/// transport's playout and the listener are all running), lets them run, then ends them all.
async fn open_and_close_calls(services: &agent::Services, tts: &ToneTts) {
    let mut calls = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let (io, student) = Student::connect();
        let mut config = quiet_config();
        config.greeting = Some("Hi there. How are you today?".into());
        let handle = Call::start(config, services.clone(), Arc::new(NoHook), io);
        calls.push((handle, student));
    }
    // 0.3 s in: every call is mid-greeting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (handle, _) in &calls {
        handle.end();
    }
    for (handle, _) in &calls {
        assert_eq!(handle.ended().await, EndReason::Ended);
    }
    drop(calls);
    // The stand-in TTS logs every sentence; that log is the test's, not the calls'.
    tts.sentences.lock().unwrap().clear();
    // Let aborted tasks be dropped by the scheduler.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_calls_open_and_close_without_leaking_tasks_or_memory() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tts = ToneTts::new(Duration::from_millis(50), Duration::from_millis(50));
    let services = services(
        ScriptedStt::new(&[], Duration::from_millis(100)),
        FakeLlm::replying("unused"),
        tts.clone(),
    );
    let tasks_before = metrics.num_alive_tasks();

    // The first round warms up the runtime's own pools (timer wheel, task slabs).
    open_and_close_calls(&services, &tts).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        tasks_before,
        "tasks left behind after the first round"
    );
    let bytes_after_warm_up = LIVE_BYTES.load(Ordering::Relaxed);

    open_and_close_calls(&services, &tts).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        tasks_before,
        "tasks left behind after the second round"
    );
    let growth = LIVE_BYTES.load(Ordering::Relaxed) - bytes_after_warm_up;
    // A thousand calls that each leaked even one small buffer would show up here.
    assert!(
        growth < 64 * 1024,
        "{growth} bytes still held after {CALLS} calls came and went"
    );
}
