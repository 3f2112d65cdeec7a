// Event loop policy (Lib/asyncio/events.py).
#include "asyncio/policy.hpp"

#include <atomic>
#include <mutex>
#include <thread>

#include "thread_state.hpp"

namespace asyncio {

namespace {

std::atomic<unsigned long long> next_policy_id{1};
const std::thread::id main_thread = std::this_thread::get_id();

std::mutex policy_mutex;
std::unique_ptr<EventLoopPolicy>& installed_policy() {
    static std::unique_ptr<EventLoopPolicy> policy;
    return policy;
}

}  // namespace

/// One thread's current loop under one policy (Python's threading.local).
struct EventLoopPolicy::ThreadState {
    unsigned long long policy_id = 0;
    EventLoop* loop = nullptr;
    bool set_called = false;
    std::unique_ptr<EventLoop> owned;  // a loop get_event_loop() created
};

EventLoopPolicy::EventLoopPolicy() : id_(next_policy_id.fetch_add(1)) {}
EventLoopPolicy::~EventLoopPolicy() = default;

EventLoopPolicy::ThreadState& EventLoopPolicy::local() {
    ThreadState& state = detail::thread_state<ThreadState>();
    if (state.policy_id != id_) {
        state.owned.reset();
        state = ThreadState{};
        state.policy_id = id_;
    }
    return state;
}

EventLoop& EventLoopPolicy::get_event_loop() {
    ThreadState& state = local();
    if (state.loop == nullptr && !state.set_called && std::this_thread::get_id() == main_thread) {
        if (!state.owned) state.owned = new_event_loop();
        state.loop = state.owned.get();
    }
    if (state.loop == nullptr) throw RuntimeError("There is no current event loop in this thread.");
    return *state.loop;
}

void EventLoopPolicy::set_event_loop(EventLoop* loop) {
    ThreadState& state = local();
    state.set_called = true;
    // A loop get_event_loop() created stays alive (Python only drops its
    // reference; futures bound to it may still be in use).
    state.loop = loop;
}

std::unique_ptr<EventLoop> EventLoopPolicy::new_event_loop() {
    return std::make_unique<EventLoop>();
}

EventLoopPolicy& get_event_loop_policy() {
    std::lock_guard lock(policy_mutex);
    auto& policy = installed_policy();
    if (!policy) policy = std::make_unique<EventLoopPolicy>();
    return *policy;
}

void set_event_loop_policy(std::unique_ptr<EventLoopPolicy> policy) {
    std::lock_guard lock(policy_mutex);
    installed_policy() = std::move(policy);
}

EventLoop& get_running_loop() {
    if (detail::running_loop() == nullptr) throw RuntimeError("no running event loop");
    return detail::running_loop()->owner();
}

EventLoop& get_event_loop() {
    if (detail::running_loop() != nullptr) return detail::running_loop()->owner();
    return get_event_loop_policy().get_event_loop();
}

void set_event_loop(EventLoop* loop) {
    get_event_loop_policy().set_event_loop(loop);
}

std::unique_ptr<EventLoop> new_event_loop() {
    return get_event_loop_policy().new_event_loop();
}

}  // namespace asyncio
