# bin/rails runner script/patches/touch_user.rb ID: renames user ID (waits on a lock another session holds on it).
User.where(id: Integer(ARGV.fetch(0))).update_all(name: "touched by a patch", updated_at: Time.current)
puts "touched user #{ARGV[0]}"
