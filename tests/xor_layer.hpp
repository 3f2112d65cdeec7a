// A toy protocol layered over a transport, standing in for TLS in the tests
// of the start_tls machinery (insert_layer, StreamWriter::upgrade_transport).
//
// Its "handshake", in TLS's order: the client sends a one-byte key, the
// server answers with its own. From then on each side XORs what the
// application writes with its own key and what arrives with the peer's.
// It is at once the protocol of the transport below and the transport the
// application uses, as sslproto.SSLProtocol and its _SSLProtocolTransport,
// and pauses reading as they do: its own flag, data waiting in the layer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "support.hpp"

namespace asyncio_test {

inline std::string xored(std::string_view data, char key) {
    std::string out(data);
    for (char& c : out)
        c = static_cast<char>(c ^ key);
    return out;
}

class XorLayer final : public asyncio::Protocol, public asyncio::Transport {
  public:
    XorLayer(std::shared_ptr<asyncio::BaseProtocol> app, char key, bool server_side,
             asyncio::Future<> ready)
        : app_(std::move(app)), key_(key), server_side_(server_side), ready_(std::move(ready)) {}

    /// What start_tls would be with this layer instead of TLS.
    static asyncio::Coro<std::shared_ptr<asyncio::Transport>> start(
        asyncio::Transport& below, std::shared_ptr<asyncio::BaseProtocol> app, char key,
        bool server_side) {
        asyncio::Future<> ready = asyncio::get_running_loop().create_future();
        auto layer = std::make_shared<XorLayer>(std::move(app), key, server_side, ready);
        co_await asyncio::insert_layer(below, layer, ready);
        co_return layer;
    }

    int pause_reading_calls = 0;
    int connection_made_calls = 0;
    std::vector<std::string> events;  // what the layer was told, in order

    /// The transport below, while connected.
    asyncio::Transport* below_transport() const { return below_; }

    // -- the protocol of the transport below --
    void connection_made(asyncio::BaseTransport& below) override {
        ++connection_made_calls;
        events.push_back("connection_made");
        below_ = &dynamic_cast<asyncio::Transport&>(below);
        if (!server_side_) below_->write(std::string(1, key_));
    }
    void data_received(std::string_view data) override {
        events.push_back("data_received");
        if (below_ == nullptr) return;  // before connection_made: the test sees it in `events`
        if (!peer_key_) {
            peer_key_ = data.front();
            data.remove_prefix(1);
            if (server_side_) below_->write(std::string(1, key_));
            if (!ready_.done()) ready_.set_result();
        }
        if (data.empty()) return;
        held_ += xored(data, *peer_key_);
        // Like SSLProtocol: what the application does not take waits here,
        // and the transport below is paused while too much waits.
        if (held_.size() > kHeldLimit && !below_paused_) {
            below_paused_ = true;
            below_->pause_reading();
        }
        deliver();
    }
    bool eof_received() override {
        events.push_back("eof_received");
        if (!peer_key_) return false;  // closes: connection_lost fails the handshake
        eof_held_ = true;
        deliver();
        return true;  // deliver() closes if the application does not keep it open
    }
    void connection_lost(std::exception_ptr error) override {
        events.push_back("connection_lost");
        below_ = nullptr;
        if (peer_key_) {
            app_->connection_lost(error);
            return;
        }
        // Not told to the application: start_tls's caller gets the error.
        if (!ready_.done()) {
            ready_.set_exception(error ? error
                                       : std::make_exception_ptr(std::system_error(
                                             std::make_error_code(std::errc::connection_reset),
                                             "connection lost during the handshake")));
        }
    }
    void pause_writing() override { app_->pause_writing(); }
    void resume_writing() override { app_->resume_writing(); }

    // -- the transport the application uses --
    void write(std::string_view data) override { below().write(xored(data, key_)); }
    void write_eof() override { below().write_eof(); }
    bool can_write_eof() const override { return below_ != nullptr && below_->can_write_eof(); }
    void abort() override { below().abort(); }
    std::size_t get_write_buffer_size() const override {
        return below_ ? below_->get_write_buffer_size() : 0;
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override {
        below().set_write_buffer_limits(high, low);
    }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return below_->get_write_buffer_limits();
    }
    // Pausing is the layer's own, as _SSLProtocolTransport's: the transport
    // below keeps reading (up to kHeldLimit).
    bool is_reading() const override { return below_ != nullptr && !app_paused_; }
    void pause_reading() override {
        ++pause_reading_calls;
        app_paused_ = true;
    }
    void resume_reading() override {
        if (!app_paused_) return;
        app_paused_ = false;
        // From the loop: the caller may be inside data_received.
        std::weak_ptr<asyncio::BaseTransport> weak = weak_from_this();
        asyncio::get_running_loop().call_soon([weak] {
            if (auto self = weak.lock()) dynamic_cast<XorLayer&>(*self).deliver();
        });
    }
    void close() override {
        if (below_) below_->close();
    }
    bool is_closing() const override { return below_ == nullptr || below_->is_closing(); }
    void set_protocol(std::shared_ptr<asyncio::BaseProtocol> protocol) override {
        app_ = std::move(protocol);
    }
    std::shared_ptr<asyncio::BaseProtocol> get_protocol() const override { return app_; }
    std::any get_extra_info(std::string_view name) const override {
        if (name == "xor_key") return key_;
        return below_ ? below_->get_extra_info(name) : std::any{};
    }

  private:
    static constexpr std::size_t kHeldLimit = 256 * 1024;

    asyncio::Transport& below() const {
        if (below_ == nullptr) throw asyncio::RuntimeError("the layer is not connected");
        return *below_;
    }

    // Hands what waits to the application while it reads, then a held EOF.
    void deliver() {
        auto* stream = dynamic_cast<asyncio::Protocol*>(app_.get());
        if (app_paused_ || stream == nullptr || below_ == nullptr) return;
        while (!held_.empty() && !app_paused_) {
            std::string chunk = std::move(held_);
            held_.clear();
            stream->data_received(chunk);
        }
        // Only what it paused itself, as SSLProtocol._control_ssl_reading.
        if (below_ != nullptr && held_.size() <= kHeldLimit && below_paused_) {
            below_paused_ = false;
            below_->resume_reading();
        }
        if (eof_held_ && held_.empty() && !app_paused_) {
            eof_held_ = false;
            if (!stream->eof_received() && below_ != nullptr) below_->close();
        }
    }

    std::shared_ptr<asyncio::BaseProtocol> app_;
    asyncio::Transport* below_ = nullptr;
    char key_;
    bool server_side_;
    std::optional<char> peer_key_;
    asyncio::Future<> ready_;
    std::string held_;
    bool app_paused_ = false;
    bool below_paused_ = false;
    bool eof_held_ = false;
};

}  // namespace asyncio_test
