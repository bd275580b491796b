// Draws a schedule as an SVG: a heat map of p_l(t) (layers by steps) with theta(t) beneath it on
// the same step axis, and a colour bar. Plain text output, no plotting dependency.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "pld/schedule/schedule.hpp"

namespace pld::tools {

// A perceptually ordered dark-to-light ramp (anchors sampled from matplotlib's viridis).
inline std::string ramp_colour(double v) {
  static const double anchors[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  v = std::clamp(v, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(v));
  const double f = v - i;
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x",
                static_cast<int>(std::lround(anchors[i][0] + f * (anchors[i + 1][0] - anchors[i][0]))),
                static_cast<int>(std::lround(anchors[i][1] + f * (anchors[i + 1][1] - anchors[i][1]))),
                static_cast<int>(std::lround(anchors[i][2] + f * (anchors[i + 1][2] - anchors[i][2]))));
  return buf;
}

inline std::string xml_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      default: r += c;
    }
  }
  return r;
}

// Writes the SVG for steps [0, total) sampled at up to `max_columns` columns.
inline void write_schedule_svg(std::ostream& os, const Schedule& s, std::int64_t total,
                               const std::string& title, int max_columns = 240) {
  const int L = s.num_layers();
  const int cols = static_cast<int>(std::min<std::int64_t>(total, max_columns));
  const double left = 70, top = 40, map_w = 640, map_h = std::clamp(14.0 * L, 120.0, 420.0);
  const double gap = 40, theta_h = 130, bar_x = left + map_w + 30, bar_w = 18;
  const double width = bar_x + bar_w + 60, height = top + map_h + gap + theta_h + 50;
  const double cell_w = map_w / cols, cell_h = map_h / L;
  auto step_at = [&](int c) { return static_cast<std::int64_t>(static_cast<double>(c) * total / cols); };
  char buf[256];

  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
     << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  os << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  os << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">" << xml_escape(title) << "</text>\n";

  // Heat map: layer 1 at the bottom, as the stack is drawn in the paper.
  os << "<g id=\"heatmap\" shape-rendering=\"crispEdges\">\n";
  std::vector<double> p(static_cast<std::size_t>(L));
  for (int c = 0; c < cols; ++c) {
    s.keep_probs(step_at(c), p.data());
    for (int i = 0; i < L; ++i) {
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                    left + c * cell_w, top + (L - 1 - i) * cell_h, cell_w + 0.05, cell_h + 0.05,
                    ramp_colour(p[static_cast<std::size_t>(i)]).c_str());
      os << buf;
    }
  }
  os << "</g>\n";
  os << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << map_w << "\" height=\"" << map_h
     << "\" fill=\"none\" stroke=\"black\"/>\n";
  // Layer ticks: first, middle, last.
  for (int l : {1, (L + 1) / 2, L}) {
    const double y = top + (L - l + 0.5) * cell_h + 4;
    os << "<text x=\"" << left - 6 << "\" y=\"" << y << "\" text-anchor=\"end\">" << l << "</text>\n";
    if (L == 1) break;
  }
  os << "<text transform=\"translate(18," << top + map_h / 2
     << ") rotate(-90)\" text-anchor=\"middle\">layer l</text>\n";

  // theta(t) panel.
  const double ty = top + map_h + gap;
  os << "<rect x=\"" << left << "\" y=\"" << ty << "\" width=\"" << map_w << "\" height=\"" << theta_h
     << "\" fill=\"none\" stroke=\"black\"/>\n";
  for (double v : {0.0, 0.5, 1.0}) {
    const double y = ty + (1.0 - v) * theta_h;
    os << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + map_w << "\" y2=\"" << y
       << "\" stroke=\"#dddddd\"/>\n";
    os << "<text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << v << "</text>\n";
  }
  os << "<polyline id=\"theta\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"";
  for (int c = 0; c <= cols; ++c) {
    const std::int64_t t = c == cols ? total - 1 : step_at(c);
    std::snprintf(buf, sizeof buf, "%.2f,%.2f ", left + c * cell_w, ty + (1.0 - s.theta(t)) * theta_h);
    os << buf;
  }
  os << "\"/>\n";
  os << "<text transform=\"translate(18," << ty + theta_h / 2
     << ") rotate(-90)\" text-anchor=\"middle\">theta(t)</text>\n";

  // Step axis under the theta panel.
  for (int k = 0; k <= 4; ++k) {
    const double x = left + map_w * k / 4.0;
    const auto t = static_cast<std::int64_t>(static_cast<double>(total) * k / 4.0);
    os << "<text x=\"" << x << "\" y=\"" << ty + theta_h + 16 << "\" text-anchor=\"middle\">" << t
       << "</text>\n";
  }
  os << "<text x=\"" << left + map_w / 2 << "\" y=\"" << ty + theta_h + 34
     << "\" text-anchor=\"middle\">step t</text>\n";

  // Colour bar for p.
  const int bands = 50;
  for (int k = 0; k < bands; ++k) {
    const double v = (k + 0.5) / bands;
    std::snprintf(buf, sizeof buf, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                  bar_x, top + (1.0 - static_cast<double>(k + 1) / bands) * map_h, bar_w,
                  map_h / bands + 0.05, ramp_colour(v).c_str());
    os << buf;
  }
  os << "<rect x=\"" << bar_x << "\" y=\"" << top << "\" width=\"" << bar_w << "\" height=\"" << map_h
     << "\" fill=\"none\" stroke=\"black\"/>\n";
  for (double v : {0.0, 0.5, 1.0})
    os << "<text x=\"" << bar_x + bar_w + 4 << "\" y=\"" << top + (1.0 - v) * map_h + 4 << "\">" << v
       << "</text>\n";
  os << "<text x=\"" << bar_x << "\" y=\"" << top - 8 << "\">p_l(t)</text>\n";
  os << "</svg>\n";
}

}  // namespace pld::tools
