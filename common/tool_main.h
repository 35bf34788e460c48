// The boundary every p3d command-line tool shares: flag parsing with CLI11,
// exit codes, and no exception ever escaping main (a library bug or an
// allocation failure prints a message and exits instead of aborting).
//
// Exit codes (README): 0 success; 1 a comparison or check that ran and failed
// its verdict where a tool documents it; 2 bad input (a flag, a file, a
// field: the message names it); 3 the request is well formed but infeasible
// (no legal plan, nothing fits); 4 the GPU, the runtime or communication
// failed (p3d-run, p3d-calibrate).
#pragma once

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <new>

#include "common/status.h"

namespace p3d {

inline constexpr int kExitBadInput = 2;
inline constexpr int kExitInfeasible = 3;
inline constexpr int kExitRuntime = 4;

// Parses argv into `app`. Returns -1 when parsing succeeded, else the exit
// code: 0 after --help, kExitBadInput for a malformed flag (CLI11 names it).
inline int ParseFlags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadInput;
  }
  return -1;
}

// Runs `body` (returning an exit code), turning any escaping exception into a
// message naming the tool and `on_exception` as the exit code.
template <typename Body>
int GuardedMain(const char* tool, int on_exception, Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    std::cerr << tool << ": out of host memory\n";
  } catch (const std::exception& e) {
    std::cerr << tool << ": unexpected error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << tool << ": unexpected error\n";
  }
  return on_exception;
}

}  // namespace p3d
