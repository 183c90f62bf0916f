# bin/rails runner script/patches/calls_out.rb URL: calls an HTTP endpoint (blocked in the dry run).
require "net/http"
begin
  res = Net::HTTP.get_response(URI(ARGV.fetch(0)))
  puts "called out: HTTP #{res.code}"
rescue SystemCallError, IOError, SocketError => e
  puts "call failed: #{e.class}: #{e.message}"
end
User.where(id: 1).update_all(updated_at: Time.current)
