# A data-patch script whose dry run passes and whose real run fails (exit 3): it stands for a
# patch that fails on what a dry run cannot contain (here: it only calls out when it commits).
# The dry-run build carries BATCHLESS_PREVIEW_ID; the real run carries BATCHLESS_PATCH_ID.
if ENV["BATCHLESS_PREVIEW_ID"]
  puts "dry run: the billing service is not called"
else
  warn "RuntimeError: script/patches/fails_in_real_run.rb: the billing service refused the patch"
  exit 3
end
