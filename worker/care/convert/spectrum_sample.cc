#include "care/convert/spectrum_sample.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace care::convert {

SpectrumReport SampleSpectrum(const double* sigma, int64_t n, int max_points) {
  SpectrumReport out;
  out.size = n;
  if (n <= 0) return out;
  // cumulative[i] = Σ_{j≤i} σ_j²
  std::vector<double> cumulative(n);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += sigma[i] * sigma[i];
    cumulative[i] = total;
  }
  std::vector<int64_t> index;
  max_points = std::max(max_points, 2);  // the first and the last at least
  if (n <= max_points) {
    for (int64_t i = 0; i < n; ++i) index.push_back(i);
  } else {
    // Positions p with log(p + 1) evenly spaced in [0, log n]; rounding makes
    // the first ones collide, so fill up with the next unused positions.
    const double top = std::log(static_cast<double>(n));
    int64_t next = 0;
    for (int i = 0; i < max_points; ++i) {
      const int remaining = max_points - i;
      int64_t p = std::llround(std::exp(top * i / (max_points - 1))) - 1;
      p = std::max(p, next);
      p = std::min(p, n - remaining);  // leave room for the rest
      index.push_back(p);
      next = p + 1;
    }
  }
  for (int64_t p : index) {
    out.index.push_back(p);
    out.sigma.push_back(sigma[p]);
    out.energy.push_back(total > 0 ? cumulative[p] / total : 1.0);
  }
  return out;
}

}  // namespace care::convert
