// A oneDNN convolution pass (forward, data gradient or weight gradient),
// called the way TensorFlow and PyTorch call it on a CPU without AMX:
// activations channels-last (acdb), weights in oneDNN's blocked ABcd16b16a,
// 3x3, stride 1, padding 1.
// benchmarks/conv_alone.py builds this against a oneDNN install and reads
// the primitive's times from oneDNN's verbose log (ONEDNN_VERBOSE=1), as it
// does for the two frameworks; the first WARMUP calls of each shape are not
// counted.
//
//   conv_alone PASS DATA_TYPE SCRATCHPAD WARMUP CALLS BATCH C,HW [C,HW ...]
//   PASS: forward, data or weights; DATA_TYPE: bf16 or f32; SCRATCHPAD: library
//   (oneDNN's own memory) or user (the caller's, as PyTorch hands it).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"

using namespace dnnl;

int main(int argc, char **argv) {
    if (argc < 8) {
        std::fprintf(stderr, "usage: %s forward|data|weights bf16|f32 library|user WARMUP "
                     "CALLS BATCH C,HW...\n", argv[0]);
        return 2;
    }
    const std::string pass = argv[1];
    const auto type = std::strcmp(argv[2], "bf16") == 0 ? memory::data_type::bf16
                                                         : memory::data_type::f32;
    const bool user = std::strcmp(argv[3], "user") == 0;
    const int warmup = std::atoi(argv[4]), calls = std::atoi(argv[5]);
    const memory::dim batch = std::atoi(argv[6]);
    engine eng(engine::kind::cpu, 0);
    stream strm(eng);
    const dnnl_version_t *version = dnnl_version();
    std::printf("oneDNN %d.%d.%d\n", version->major, version->minor, version->patch);
    for (int a = 7; a < argc; ++a) {
        int c = 0, hw = 0;
        if (std::sscanf(argv[a], "%d,%d", &c, &hw) != 2) {
            std::fprintf(stderr, "bad shape %s (want C,HW)\n", argv[a]);
            return 2;
        }
        const memory::dims act = {batch, c, hw, hw}, weights = {c, c, 3, 3};
        const memory::dims strides = {1, 1}, padding = {1, 1};
        const memory::desc src_md(act, type, memory::format_tag::acdb);
        const memory::desc dst_md(act, type, memory::format_tag::acdb);
        // Weights in the layout oneDNN picks for the pass, as both frameworks ask.
        const memory::desc weights_md(weights, type, memory::format_tag::any);
        primitive_attr attr;
        if (user) attr.set_scratchpad_mode(scratchpad_mode::user);
        const convolution_forward::primitive_desc hint(
            eng, prop_kind::forward_training, algorithm::convolution_direct, src_md,
            weights_md, dst_md, strides, padding, padding, attr);
        // The pass's primitive and its arguments: the forward pass writes dst, the
        // data gradient src (from dst and the weights), the weight gradient the weights.
        primitive conv;
        memory::desc scratchpad_md, chosen_weights_md;
        std::string impl;
        int src_arg = DNNL_ARG_SRC, weights_arg = DNNL_ARG_WEIGHTS, dst_arg = DNNL_ARG_DIFF_DST;
        const auto take = [&](const auto &pd, primitive made, const memory::desc &chosen) {
            conv = made;
            scratchpad_md = pd.scratchpad_desc();
            chosen_weights_md = chosen;
            impl = pd.impl_info_str();
        };
        if (pass == "forward") {
            take(hint, convolution_forward(hint), hint.weights_desc());
            dst_arg = DNNL_ARG_DST;
        } else if (pass == "data") {
            const convolution_backward_data::primitive_desc pd(eng, algorithm::convolution_direct,
                src_md, weights_md, dst_md, strides, padding, padding, hint, attr);
            take(pd, convolution_backward_data(pd), pd.weights_desc());
            src_arg = DNNL_ARG_DIFF_SRC;
        } else {
            const convolution_backward_weights::primitive_desc pd(eng,
                algorithm::convolution_direct, src_md, weights_md, dst_md, strides, padding,
                padding, hint, attr);
            take(pd, convolution_backward_weights(pd), pd.diff_weights_desc());
            weights_arg = DNNL_ARG_DIFF_WEIGHTS;
        }
        memory src(src_md, eng), dst(dst_md, eng), weights_mem(chosen_weights_md, eng);
        for (memory *m : {&src, &dst, &weights_mem}) {  // values in [-0.5, 0.5), none denormal
            const size_t n = m->get_desc().get_size() / (type == memory::data_type::bf16 ? 2 : 4);
            for (size_t i = 0; i < n; ++i) {
                const float value = static_cast<float>((i * 2654435761u) % 1000) / 1000 - 0.5f;
                uint32_t bits;
                std::memcpy(&bits, &value, 4);
                if (type == memory::data_type::bf16)  // bfloat16: a float's upper half
                    static_cast<uint16_t *>(m->get_data_handle())[i] = bits >> 16;
                else
                    static_cast<float *>(m->get_data_handle())[i] = value;
            }
        }
        std::unordered_map<int, memory> args = {
            {src_arg, src}, {weights_arg, weights_mem}, {dst_arg, dst}};
        memory scratchpad(scratchpad_md, eng);
        if (user) args[DNNL_ARG_SCRATCHPAD] = scratchpad;
        for (int i = 0; i < warmup + calls; ++i) {
            conv.execute(strm, args);
            strm.wait();
        }
        std::printf("shape %d,%d: %s\n", c, hw, impl.c_str());
        std::fflush(stdout);
    }
    return 0;
}
