puts "backfilling #{ARGV.inspect}"
