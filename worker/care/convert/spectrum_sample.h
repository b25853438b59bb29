// Bounded samples of singular-value spectra for the report: a 4096-wide
// projection has 4096 singular values per layer, far more than a chart or a
// JSON reader needs, so the report keeps at most `max_points` of them.
#ifndef CARE_CONVERT_SPECTRUM_SAMPLE_H_
#define CARE_CONVERT_SPECTRUM_SAMPLE_H_

#include <cstdint>

#include "care/convert/report.h"

namespace care::convert {

inline constexpr int kReportSpectrumPoints = 64;

// `sigma[0..n)` descending. All n values when n <= max_points; otherwise
// max_points distinct positions spaced evenly in log(position + 1), always
// including the first and the last (max_points < 2 counts
// as 2), so the head of the spectrum (where the
// ranks are cut) keeps its detail and the tail its shape. The cumulative
// energy is computed from the full spectrum.
SpectrumReport SampleSpectrum(const double* sigma, int64_t n,
                              int max_points = kReportSpectrumPoints);

}  // namespace care::convert

#endif  // CARE_CONVERT_SPECTRUM_SAMPLE_H_
