// contextvars: ports of CPython's Lib/test/test_context.py (ContextVar,
// Token, Context, copy_context, run, threads) and of the asyncio cases of
// test_tasks.py / test_events.py that check which Context tasks and
// callbacks run in (PEP 567's asyncio section).
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Context;
using asyncio::ContextVar;
using asyncio::Coro;
using asyncio::Future;
using asyncio::Task;
using asyncio_test::run_guarded;

// -- ContextVar and Token ------------------------------------------------------------

TEST_CASE("ContextVar.get: the value, else the default, else LookupError") {
    Context().run([] {
        ContextVar<int> plain("plain");
        ContextVar<std::string> with_default("with_default", "dflt");
        CHECK(plain.name() == "plain");
        CHECK_THROWS_AS(plain.get(), std::out_of_range);
        CHECK_THROWS_WITH(plain.get(), "LookupError: <ContextVar name='plain'>");
        CHECK(plain.get(5) == 5);  // get(default)
        CHECK(with_default.get() == "dflt");
        CHECK(with_default.get("given") == "given");  // the argument wins over the default
        plain.set(1);
        with_default.set("set");
        CHECK(plain.get() == 1);
        CHECK(plain.get(5) == 1);
        CHECK(with_default.get() == "set");
        CHECK(with_default.get("given") == "set");
    });
}

TEST_CASE("ContextVar.set returns a Token; reset restores the previous value") {
    Context().run([] {
        ContextVar<int> var("var");
        auto t1 = var.set(1);
        CHECK(&t1.var() == &var);
        CHECK_FALSE(t1.old_value().has_value());  // Token.MISSING
        auto t2 = var.set(2);
        CHECK(t2.old_value() == 1);
        auto t3 = var.set(3);
        CHECK(t3.old_value() == 2);
        CHECK(var.get() == 3);
        var.reset(t3);
        CHECK(var.get() == 2);
        var.reset(t2);
        CHECK(var.get() == 1);
        var.reset(t1);
        CHECK_THROWS_AS(var.get(), std::out_of_range);  // unset again, not set to a value
    });
}

TEST_CASE("reset out of order restores the value that token saw") {
    Context().run([] {
        ContextVar<int> var("var", 0);
        auto t1 = var.set(1);
        auto t2 = var.set(2);
        var.reset(t1);
        CHECK(var.get() == 0);
        var.reset(t2);  // still unused: restores what it saw
        CHECK(var.get() == 1);
    });
}

TEST_CASE("a token can be used once (copies share that)") {
    Context().run([] {
        ContextVar<int> var("var");
        auto token = var.set(1);
        auto copy = token;
        var.reset(token);
        CHECK_THROWS_AS(var.reset(token), asyncio::RuntimeError);
        CHECK_THROWS_WITH(var.reset(copy), "Token has already been used once");
    });
}

TEST_CASE("a token of another variable is refused with std::invalid_argument") {
    Context().run([] {
        ContextVar<int> a("a");
        ContextVar<int> b("b");
        auto token = a.set(1);
        b.set(2);
        CHECK_THROWS_AS(b.reset(token), std::invalid_argument);
        CHECK_THROWS_WITH(b.reset(token), "Token was created by a different ContextVar");
        CHECK(b.get() == 2);
        a.reset(token);  // still usable where it belongs
        CHECK_THROWS_AS(a.get(), std::out_of_range);
    });
}

TEST_CASE("a token of another context is refused with std::invalid_argument") {
    ContextVar<int> var("var");
    Context ctx1;
    Context ctx2;
    auto token = ctx1.run([&] { return var.set(1); });
    ctx2.run([&] {
        CHECK_THROWS_AS(var.reset(token), std::invalid_argument);
        CHECK_THROWS_WITH(var.reset(token), "Token was created in a different Context");
    });
    // A copy of the context is another context too.
    Context copy = ctx1.copy();
    copy.run([&] { CHECK_THROWS_AS(var.reset(token), std::invalid_argument); });
    ctx1.run([&] { var.reset(token); });
    CHECK_FALSE(ctx1.contains(var));
}

TEST_CASE("a token of one callback's context is refused in another callback") {
    // Both callbacks run in their own (stack) context at the same address:
    // identity must not be the address.
    auto loop = asyncio::new_event_loop();
    ContextVar<int> var("var");
    std::optional<asyncio::Token<int>> token;
    std::string error;
    loop->call_soon([&] { token = var.set(1); });
    loop->call_soon([&] {
        try {
            var.reset(*token);
        } catch (const std::invalid_argument& e) {
            error = e.what();
        }
        loop->stop();
    });
    loop->run_forever();
    loop->close();
    CHECK(error == "Token was created in a different Context");
}

// -- Context -----------------------------------------------------------------------------

TEST_CASE("a new Context is empty") {
    ContextVar<int> var("var", 7);
    Context ctx;
    CHECK(ctx.size() == 0);
    CHECK_FALSE(ctx.contains(var));
    CHECK_FALSE(ctx.get(var).has_value());  // the variable's default is not a value
    CHECK(ctx.run([&] { return var.get(); }) == 7);
}

TEST_CASE("Context.run makes the context current and returns fn's result") {
    ContextVar<std::string> var("var");
    Context ctx;
    const int n = ctx.run([&] {
        var.set("in ctx");
        return 42;
    });
    CHECK(n == 42);
    CHECK(ctx.size() == 1);
    CHECK(ctx.get(var) == "in ctx");
    // The caller's context did not change.
    Context().run([&] { CHECK(var.get(std::string("unset")) == "unset"); });
    // The value is there the next time the context runs.
    CHECK(ctx.run([&] { return var.get(); }) == "in ctx");
}

TEST_CASE("Context.run refuses to enter a context that is already entered") {
    Context ctx;
    Context alias = ctx;  // the same context
    std::string error;
    ctx.run([&] {
        try {
            alias.run([] {});
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
    });
    CHECK(error == "cannot enter context: it is already entered");
    ctx.run([] {});  // exited properly: enterable again
}

TEST_CASE("Context.run exits the context when fn throws; its sets stay") {
    ContextVar<int> var("var");
    Context ctx;
    CHECK_THROWS_WITH(ctx.run([&] {
        var.set(1);
        throw std::runtime_error("spam");
    }),
                      "spam");
    CHECK(ctx.get(var) == 1);
    ctx.run([] {});
}

TEST_CASE("nested Context.run of different contexts restores the outer one") {
    ContextVar<int> var("var", 0);
    Context outer;
    Context inner;
    outer.run([&] {
        var.set(1);
        inner.run([&] {
            CHECK(var.get() == 0);
            var.set(2);
        });
        CHECK(var.get() == 1);
    });
    CHECK(outer.get(var) == 1);
    CHECK(inner.get(var) == 2);
}

TEST_CASE("Context.copy is independent; copies of the handle are the same context") {
    ContextVar<int> var("var");
    ContextVar<int> other("other");
    Context ctx;
    ctx.run([&] { var.set(1); });
    Context copy = ctx.copy();
    CHECK(copy.get(var) == 1);
    copy.run([&] {
        var.set(2);
        other.set(3);
    });
    CHECK(ctx.get(var) == 1);
    CHECK_FALSE(ctx.contains(other));
    CHECK(copy.get(var) == 2);
    CHECK(copy.size() == 2);
    Context alias = ctx;
    alias.run([&] { var.set(4); });
    CHECK(ctx.get(var) == 4);
}

TEST_CASE("copy_context copies the current context") {
    ContextVar<int> var("var");
    Context ctx;
    ctx.run([&] {
        var.set(1);
        Context snapshot = asyncio::copy_context();
        var.set(2);
        CHECK(snapshot.get(var) == 1);
        CHECK(snapshot.run([&] { return var.get(); }) == 1);
        CHECK(var.get() == 2);
    });
}

TEST_CASE("every thread starts in its own empty context") {
    ContextVar<int> var("var", -1);
    int in_first = 0;
    int in_second = 0;
    std::thread first([&] {
        var.set(1);
        in_first = var.get();
        std::thread second([&] { in_second = var.get(); });
        second.join();
    });
    first.join();
    CHECK(in_first == 1);
    CHECK(in_second == -1);
}

TEST_CASE("many variables in one context") {
    std::vector<std::unique_ptr<ContextVar<int>>> vars;
    for (int i = 0; i < 100; ++i)
        vars.push_back(std::make_unique<ContextVar<int>>("v" + std::to_string(i)));
    Context ctx;
    ctx.run([&] {
        for (int i = 99; i >= 0; --i)
            vars[i]->set(i);
        for (int i = 0; i < 100; ++i)
            CHECK(vars[i]->get() == i);
    });
    CHECK(ctx.size() == 100);
}

// -- asyncio ---------------------------------------------------------------------------------

namespace {
ContextVar<std::string> request_id("request_id", "none");

Coro<std::string> read_request_id() {
    co_await asyncio::sleep(0);
    co_return request_id.get();
}
}  // namespace

TEST_CASE("a task sees its creator's values as they were when it was created") {
    auto main = []() -> Coro<void> {
        request_id.set("a");
        Task<std::string> t = asyncio::create_task(read_request_id());
        request_id.set("b");
        const std::string seen = co_await t;
        CHECK(seen == "a");
        CHECK(request_id.get() == "b");
    };
    run_guarded(main());
}

TEST_CASE("a value set in a task is invisible to its creator and to its siblings") {
    auto main = []() -> Coro<void> {
        request_id.set("main");
        auto& loop = asyncio::get_running_loop();
        Future<> set_done = loop.create_future();
        Future<> checked = loop.create_future();
        auto setter = [](Future<> set_done, Future<> checked) -> Coro<std::string> {
            request_id.set("setter");
            set_done.set_result();
            co_await checked;
            co_return request_id.get();  // still its own value across the await
        };
        auto sibling = [](Future<> set_done) -> Coro<std::string> {
            co_await set_done;
            co_return request_id.get();
        };
        Task<std::string> a = asyncio::create_task(setter(set_done, checked));
        Task<std::string> b = asyncio::create_task(sibling(set_done));
        co_await set_done;
        CHECK(request_id.get() == "main");
        const std::string from_sibling = co_await b;
        CHECK(from_sibling == "main");
        checked.set_result();
        const std::string from_setter = co_await a;
        CHECK(from_setter == "setter");
        CHECK(request_id.get() == "main");
    };
    run_guarded(main());
}

TEST_CASE("a child task inherits the context of the task that created it") {
    auto main = []() -> Coro<void> {
        auto parent = []() -> Coro<std::string> {
            request_id.set("parent");
            Task<std::string> child = asyncio::create_task(read_request_id());
            co_return co_await child;
        };
        const std::string seen = co_await asyncio::create_task(parent());
        CHECK(seen == "parent");
        CHECK(request_id.get() == "none");
    };
    run_guarded(main());
}

TEST_CASE("a token from the creator cannot reset a value inside a task") {
    auto main = []() -> Coro<void> {
        auto token = request_id.set("creator");
        auto resetter = [](asyncio::Token<std::string> token) -> Coro<std::string> {
            try {
                request_id.reset(token);
            } catch (const std::invalid_argument& e) {
                co_return e.what();
            }
            co_return "reset";
        };
        const std::string result = co_await asyncio::create_task(resetter(token));
        CHECK(result == "Token was created in a different Context");
        request_id.reset(token);  // fine where it was made
        CHECK(request_id.get() == "none");
    };
    run_guarded(main());
}

TEST_CASE("TaskOptions::context runs the task in the given Context") {
    auto main = []() -> Coro<void> {
        Context ctx;
        ctx.run([] { request_id.set("given"); });
        auto body = []() -> Coro<std::string> {
            const std::string before = request_id.get();
            request_id.set("changed by the task");
            co_await asyncio::sleep(0);
            co_return before;
        };
        request_id.set("creator");
        Task<std::string> t = asyncio::create_task(body(), {.context = ctx});
        const std::string seen = co_await t;
        CHECK(seen == "given");
        CHECK(ctx.get(request_id) == "changed by the task");  // visible through the Context
        CHECK(request_id.get() == "creator");
    };
    run_guarded(main());
}

TEST_CASE("tasks given the same Context see each other's sets") {
    // test_tasks.py test_context_3: a shared context is shared.
    auto main = []() -> Coro<void> {
        ContextVar<int> counter("counter", 0);
        Context ctx;
        auto bump = [](ContextVar<int>& counter) -> Coro<void> {
            for (int i = 0; i < 5; ++i) {
                counter.set(counter.get() + 1);
                co_await asyncio::sleep(0);
            }
        };
        Task<> a = asyncio::create_task(bump(counter), {.context = ctx});
        Task<> b = asyncio::create_task(bump(counter), {.context = ctx});
        co_await a;
        co_await b;
        CHECK(ctx.get(counter) == 10);
        CHECK(counter.get() == 0);
    };
    run_guarded(main());
}

TEST_CASE("call_soon and call_later callbacks run in a copy of the scheduling context") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        request_id.set("scheduled");
        Future<std::string> soon = loop.create_future<std::string>();
        Future<std::string> later = loop.create_future<std::string>();
        Future<std::string> second = loop.create_future<std::string>();
        loop.call_soon([soon]() mutable {
            soon.set_result(request_id.get());
            request_id.set("set by the callback");  // lost with the callback's copy
        });
        loop.call_later(1ms, [later]() mutable { later.set_result(request_id.get()); });
        loop.call_soon([second]() mutable { second.set_result(request_id.get()); });
        request_id.set("after scheduling");
        const std::string a = co_await soon;
        const std::string b = co_await later;
        const std::string c = co_await second;
        CHECK(a == "scheduled");
        CHECK(b == "scheduled");
        CHECK(c == "scheduled");  // not what the first callback set
        CHECK(request_id.get() == "after scheduling");
    };
    run_guarded(main());
}

TEST_CASE("a done callback runs in a copy of the context current at add_done_callback") {
    // futures.py: add_done_callback(fn, context=None) takes copy_context().
    ContextVar<std::string> var("var", "unset");
    auto main = [](ContextVar<std::string>& var) -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Future<> fut = loop.create_future();
        Future<std::string> seen = loop.create_future<std::string>();
        var.set("at add_done_callback");
        fut.add_done_callback([&var, seen](Future<>&) mutable {
            seen.set_result(var.get());
            var.set("set by the callback");  // stays in the callback's copy
        });
        var.set("after");
        fut.set_result();
        std::string got = co_await seen;
        CHECK(var.get() == "after");
        co_return got;
    };
    CHECK(run_guarded(main(var)) == "at add_done_callback");
    CHECK(var.get() == "unset");  // nothing leaked into this thread's base context
}

TEST_CASE("add_done_callback's context option runs the callback in that Context") {
    ContextVar<std::string> var("var", "unset");
    auto main = [](ContextVar<std::string>& var) -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Context ctx;
        ctx.run([&var] { var.set("given"); });
        Future<> fut = loop.create_future();
        Future<std::string> seen = loop.create_future<std::string>();
        var.set("creator");
        fut.add_done_callback(
            [&var, seen](Future<>&) mutable {
                seen.set_result(var.get());
                var.set("changed by the callback");
            },
            {.context = ctx});
        fut.set_result();
        std::string got = co_await seen;
        CHECK(ctx.get(var) == "changed by the callback");  // visible through the Context
        CHECK(var.get() == "creator");
        co_return got;
    };
    CHECK(run_guarded(main(var)) == "given");
}

TEST_CASE("Handle.get_context holds the values the callback runs with") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        ContextVar<int> var("var", 0);
        var.set(3);
        Future<int> seen = loop.create_future<int>();
        asyncio::Handle handle =
            loop.call_soon([&var, seen]() mutable { seen.set_result(var.get()); });
        var.set(4);
        CHECK(handle.get_context().get(var) == 3);
        const int got = co_await seen;
        CHECK(got == 3);
        CHECK(asyncio::Handle().get_context().size() == 0);
    };
    run_guarded(main());
}

TEST_CASE("callbacks scheduled outside any task run in the scheduling thread's context") {
    auto loop = asyncio::new_event_loop();
    Context ctx;
    std::string seen;
    ctx.run([&] {
        request_id.set("from ctx");
        loop->call_soon([&] {
            seen = request_id.get();
            loop->stop();
        });
    });
    loop->run_forever();
    loop->close();
    CHECK(seen == "from ctx");
}

TEST_CASE("call_soon_threadsafe carries the calling thread's context") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Future<std::string> fut = loop.create_future<std::string>();
        Future<std::string>* target = &fut;  // not copied on the other thread
        std::thread other([&loop, target] {
            request_id.set("other thread");
            loop.call_soon_threadsafe([target] { target->set_result(request_id.get()); });
        });
        const std::string seen = co_await fut;
        other.join();
        CHECK(seen == "other thread");
        CHECK(request_id.get() == "none");
    };
    run_guarded(main());
}

TEST_CASE("to_thread carries the context into the worker thread") {
    // test_threads.py test_to_thread_contextvars
    auto main = []() -> Coro<void> {
        request_id.set("parrot");
        auto get_ctx = [] { return request_id.get(); };
        const std::string seen = co_await asyncio::to_thread(get_ctx);
        CHECK(seen == "parrot");
        auto set_ctx = [] {
            request_id.set("set in the worker");
            return request_id.get();
        };
        const std::string in_worker = co_await asyncio::to_thread(set_ctx);
        CHECK(in_worker == "set in the worker");
        CHECK(request_id.get() == "parrot");  // the worker had a copy
        const std::string again = co_await asyncio::to_thread(get_ctx);
        CHECK(again == "parrot");
    };
    run_guarded(main());
}

TEST_CASE("run_in_executor does not carry the context (unlike to_thread)") {
    auto main = []() -> Coro<void> {
        request_id.set("loop thread");
        auto& loop = asyncio::get_running_loop();
        auto get_ctx = [] { return request_id.get(); };
        const std::string seen = co_await loop.run_in_executor(nullptr, get_ctx);
        CHECK(seen == "none");
    };
    run_guarded(main());
}
