task :cleanup do; puts "cleanup"; end
