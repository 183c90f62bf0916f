# A data-patch script that fails on purpose: it exits with 3 after a real error.
# fake-exit: 3
begin
  User.find(-1)
rescue ActiveRecord::RecordNotFound => e
  warn "RuntimeError: script/fail.rb failed on purpose (#{e.message})"
  exit 3
end
