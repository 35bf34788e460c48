// main() for GPU test binaries: exits 77 ("skipped" for ctest, SKIP_RETURN_CODE
// in cmake/P3dTest.cmake) when no CUDA device is usable, so CPU-only CI reports
// GPU tests as skipped instead of failed; otherwise runs the GoogleTest suite.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  int devices = 0;
  cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("no usable CUDA device (%s): skipping GPU tests\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
