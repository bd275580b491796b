// The pld-schedule tool, driven in-process.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "pld-schedule/schedule_cli.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

struct CliResult {
  int status;
  std::string out, err;
};

CliResult run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int status = pld::tools::run_schedule_cli(args, out, err);
  return {status, out.str(), err.str()};
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("pld-schedule prints theta, p_l and the accounting", "[cli]") {
  const CliResult r = run({"--preset", "pld", "--layers", "12", "--steps", "0,1000", "--total", "20000"});
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Contains("p_12"));
  // Row for t = 1000: theta = 0.5 e^-1 + 0.5 = 0.6839.
  CHECK_THAT(r.out, Contains("      1000  0.6839"));
  const pld::Schedule s = pld::make_schedule(pld::ScheduleSpec{});
  char expect[128];
  std::snprintf(expect, sizeof expect, "expected kept fraction of layer work %.4f, ideal speedup %.4fx",
                pld::cumulative_kept_fraction(s, 20000), 1.0 / pld::cumulative_kept_fraction(s, 20000));
  CHECK_THAT(r.out, Contains(expect));
}

TEST_CASE("pld-schedule --csv has one column per layer", "[cli]") {
  const CliResult r = run({"--csv", "--layers", "5", "--steps", "0,10,20"});
  REQUIRE(r.status == 0);
  std::istringstream in(r.out);
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    CHECK(count(line, ",") == 5 + 2);
    ++rows;
  }
  CHECK(rows == 4);
  CHECK_THAT(r.out, StartsWith("step,theta,p_1,p_2,p_3,p_4,p_5,expected_kept_fraction\n0,1,1,1,1,1,1,1\n"));
}

TEST_CASE("pld-schedule --plan solves theta_bar", "[cli][plan]") {
  const CliResult r = run({"--plan", "1.25", "--total", "50000", "--layers", "24"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("plan: theta_bar = "));
  CHECK_THAT(r.out, Contains("ideal speedup 1.2500x over 50000 steps"));
  const CliResult random = run({"--preset", "random", "--plan", "1.25"});
  CHECK_THAT(random.out, Contains("plan: keep_ratio = 0.8"));  // 1 / 1.25
}

TEST_CASE("pld-schedule --svg draws L x columns cells and the theta curve", "[cli][svg]") {
  const std::string path = "pld_schedule_test.svg";
  std::remove(path.c_str());
  const CliResult r = run({"--svg", path, "--layers", "6", "--total", "100"});
  REQUIRE(r.status == 0);
  std::ifstream f(path);
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string svg = ss.str();
  CHECK_THAT(svg, StartsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK_THAT(svg, Contains("</svg>\n"));
  const auto heat_begin = svg.find("<g id=\"heatmap\"");
  const auto heat_end = svg.find("</g>", heat_begin);
  CHECK(count(svg.substr(heat_begin, heat_end - heat_begin), "<rect ") == 6 * 100);
  CHECK(count(svg, "<polyline id=\"theta\"") == 1);
  std::remove(path.c_str());
}

TEST_CASE("pld-schedule: bad arguments give one line and a non-zero exit", "[cli][errors]") {
  const std::vector<std::vector<std::string>> bad = {
      {"--theta-bar", "1.5"},   {"--theta-bar", "abc"},   {"--layers", "0"},
      {"--layers"},             {"--preset", "fancy"},    {"--frobnicate"},
      {"--steps", "1,,2"},      {"--steps", "-1"},        {"--total", "0"},
      {"--plan", "50"},         {"--overhead", "1"},      {"--gamma", "-1"},
      {"--decay", "linear"},    {"--profile", "0.5,2", "--layers", "2"},
      {"--svg", "/nonexistent-dir/x.svg"},
  };
  for (const auto& args : bad) {
    const CliResult r = run(args);
    INFO(args[0] << " -> " << r.err);
    CHECK(r.status != 0);
    CHECK(count(r.err, "\n") == 1);
    CHECK_THAT(r.err, StartsWith("pld-schedule: "));
    CHECK(r.out.empty());
  }
}
