# 12 users with 3 orders each; the first 4 users' orders are paid ("paid"), the rest open.
12.times do |i|
  n = i + 1
  user = User.find_or_create_by!(email: "user#{n}@example.com") { |u| u.name = "User #{n}" }
  next if user.orders.exists?

  3.times do |j|
    user.orders.create!(amount_cents: 1000 * n + 100 * j, status: n <= 4 ? "paid" : "open")
  end
end
